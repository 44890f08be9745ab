-- A detections file (named <scene key>.parquet) counts while its key's latest attempt is ok:
-- the view example queries read detections from (after views/latest_scenes.sql).
CREATE OR REPLACE TEMP VIEW current_detections AS
SELECT * EXCLUDE (filename), parse_filename(d.filename, true) AS scene_key
FROM read_parquet('{reports}/detections/dt=*/*.parquet', hive_partitioning = true, union_by_name = true, filename = true) AS d
WHERE parse_filename(d.filename, true) IN (SELECT scene_key FROM latest_scenes WHERE status = 'ok');
