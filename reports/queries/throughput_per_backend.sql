-- Detection throughput per backend and mode, from the scenes ledger (status 'ok'): megapixels per
-- second over all scenes (sum MP / sum s) and the median of per-scene rates. `seconds` is a
-- scene's wall time from planning its regions to writing its rows (reads and queueing included;
-- scenes run side by side overlap, so sum MP / sum s is a lower bound on the run's throughput).
WITH
-- The latest attempt of each scene key wins (reports/queries/README.md, "Reruns").
scenes AS (
    SELECT * FROM read_parquet('{reports}/scenes/dt=*/*.parquet', hive_partitioning = true, union_by_name = true)
    QUALIFY row_number() OVER (PARTITION BY scene_key ORDER BY finished_at DESC, run_id DESC) = 1
)
SELECT backend,
       mode,
       count(*) AS scenes,
       round(sum(megapixels), 1) AS megapixels,
       round(sum(seconds), 1) AS seconds,
       round(sum(megapixels) / nullif(sum(seconds), 0), 2) AS mp_per_s,
       round(median(megapixels / nullif(seconds, 0)), 2) AS median_scene_mp_per_s
FROM scenes
WHERE status = 'ok'
GROUP BY backend, mode
ORDER BY mp_per_s DESC NULLS LAST
