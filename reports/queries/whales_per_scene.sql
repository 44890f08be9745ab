-- Whales per scene: detections per scene version (scenes with none show 0), best and mean score.
-- Scene rows are the ledger's latest attempts that are 'ok'; detections are joined on the scene
-- key (the file name), which covers URI, version, model, mode and parameters.
-- Reads views/latest_scenes.sql and views/current_detections.sql (latest attempts win).
WITH per_scene AS (
    SELECT scene_key, count(*) AS whales, max(score) AS best_score, avg(score) AS mean_score
    FROM current_detections
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
FROM latest_scenes AS s
LEFT JOIN per_scene AS p USING (scene_key)
WHERE s.status = 'ok'
ORDER BY whales DESC, s.scene_uri, s.scene_version
