-- Whales per day: per `dt` partition (the UTC date of the scene version — S3 LastModified or file
-- mtime — not the run date), scenes ok / failed / skipped, whales found and megapixels covered.
-- From the scenes ledger alone: `detections` there is the row count of the scene's detections file.
-- Reads views/latest_scenes.sql (latest attempts win).
SELECT dt,
       count(*) FILTER (WHERE status = 'ok') AS scenes_ok,
       count(*) FILTER (WHERE status = 'failed') AS scenes_failed,
       count(*) FILTER (WHERE status = 'skipped') AS scenes_skipped,
       coalesce(sum(detections) FILTER (WHERE status = 'ok'), 0) AS whales,
       round(coalesce(sum(megapixels) FILTER (WHERE status = 'ok'), 0), 1) AS megapixels
FROM latest_scenes
GROUP BY dt
ORDER BY dt
