-- Scene keys whose latest attempt failed (or was skipped), and why, newest first. `fixed_since` is true when the
-- same scene URI has a later 'ok' row (of another key) (e.g. the object was replaced by a readable version).
-- Reads views/latest_scenes.sql (latest attempts win).
SELECT f.scene_uri,
       f.scene_version,
       f.status,
       f.error,
       f.run_id,
       f.finished_at,
       f.dt,
       EXISTS (
           SELECT 1 FROM latest_scenes AS ok
           WHERE ok.scene_uri = f.scene_uri AND ok.status = 'ok' AND ok.finished_at > f.finished_at
       ) AS fixed_since
FROM latest_scenes AS f
WHERE f.status <> 'ok'
ORDER BY f.finished_at DESC, f.scene_uri
