-- Whales per scene: detections per scene version (scenes with none show 0), best and mean score.
-- Scene rows come from the ledger (status 'ok'); detections are joined on scene URI, version,
-- model and mode, which together name one detections file.
WITH scenes AS (
    SELECT scene_uri, scene_version, model_sha256, mode, dt, megapixels
    FROM read_parquet('{reports}/scenes/dt=*/*.parquet', hive_partitioning = true, union_by_name = true)
    WHERE status = 'ok'
),
per_scene AS (
    SELECT scene_uri, scene_version, model_sha256, mode,
           count(*) AS whales, max(score) AS best_score, avg(score) AS mean_score
    FROM read_parquet('{reports}/detections/dt=*/*.parquet', hive_partitioning = true, union_by_name = true)
    GROUP BY ALL
)
SELECT s.scene_uri,
       s.scene_version,
       s.mode,
       s.dt,
       coalesce(p.whales, 0) AS whales,
       round(p.best_score::DOUBLE, 3) AS best_score,
       round(p.mean_score, 3) AS mean_score,
       round(coalesce(p.whales, 0) / nullif(s.megapixels, 0), 3) AS whales_per_mp
FROM scenes AS s
LEFT JOIN per_scene AS p USING (scene_uri, scene_version, model_sha256, mode)
ORDER BY whales DESC, s.scene_uri, s.scene_version
