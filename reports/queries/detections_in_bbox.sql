-- Detections whose box intersects a lon/lat box (degrees, WGS 84; west < east, no antimeridian).
-- The filter is on the GeoParquet 1.1 `bbox` covering column, not on `geometry`: its min/max
-- statistics let DuckDB skip whole row groups (EXPLAIN ANALYZE shows "Row Groups Scanned").
-- For boxes wholly inside instead, use bbox.xmin >= west AND bbox.xmax <= east (and y alike).
-- The defaults cover the synthetic scenes' Cape Cod Bay corner (UTM 19N, 400000 E 4640000 N).
-- param: west = -70.30
-- param: south = 41.80
-- param: east = -70.10
-- param: north = 41.95
-- Reads views/current_detections.sql (latest attempts win).
SELECT detection_id,
       round(score::DOUBLE, 4) AS score,
       scene_uri,
       round(lon, 6) AS lon,
       round(lat, 6) AS lat,
       bbox,
       dt
FROM current_detections
WHERE bbox.xmin <= {east}
  AND bbox.xmax >= {west}
  AND bbox.ymin <= {north}
  AND bbox.ymax >= {south}
ORDER BY score DESC, detection_id
