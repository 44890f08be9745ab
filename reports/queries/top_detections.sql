-- The best-scoring detections across all scenes, with where they are (lon/lat, scene pixels).
-- param: limit = 20
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
)
SELECT round(score::DOUBLE, 4) AS score,
       label,
       scene_uri,
       round(lon, 6) AS lon,
       round(lat, 6) AS lat,
       px_xmin, px_ymin, px_xmax, px_ymax,
       dt,
       run_id,
       detection_id
FROM detections
ORDER BY score DESC, detection_id
LIMIT {limit}
