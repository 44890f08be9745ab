-- Whales per scene: detections per scene version (scenes with none show 0), best and mean score.
-- Scene rows are the ledger's latest attempts that are 'ok'; detections are joined on the scene
-- key (the file name), which covers URI, version, model, mode and parameters.
WITH
-- The latest attempt of each scene key wins (reports/queries/README.md, "Reruns").
scenes AS (
    SELECT * FROM read_parquet('{reports}/scenes/dt=*/*.parquet', hive_partitioning = true, union_by_name = true)
    QUALIFY row_number() OVER (PARTITION BY scene_key ORDER BY finished_at DESC, run_id DESC) = 1
),
-- A detections file (named <scene key>.parquet) counts while its key's latest attempt is ok.
detections AS (
    SELECT * EXCLUDE (filename), parse_filename(d.filename, true) AS scene_key
    FROM read_parquet('{reports}/detections/dt=*/*.parquet', hive_partitioning = true, union_by_name = true, filename = true) AS d
    WHERE parse_filename(d.filename, true) IN (SELECT scene_key FROM scenes WHERE status = 'ok')
),
per_scene AS (
    SELECT scene_key, count(*) AS whales, max(score) AS best_score, avg(score) AS mean_score
    FROM detections
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
LEFT JOIN per_scene AS p USING (scene_key)
WHERE s.status = 'ok'
ORDER BY whales DESC, s.scene_uri, s.scene_version
