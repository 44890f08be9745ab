-- The best-scoring detections across all scenes, with where they are (lon/lat, scene pixels).
-- param: limit = 20
-- Reads views/current_detections.sql (latest attempts win).
SELECT round(score::DOUBLE, 4) AS score,
       label,
       scene_uri,
       round(lon, 6) AS lon,
       round(lat, 6) AS lat,
       px_xmin, px_ymin, px_xmax, px_ymax,
       dt,
       run_id,
       detection_id
FROM current_detections
ORDER BY score DESC, detection_id
LIMIT {limit}
