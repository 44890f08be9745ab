-- Detection throughput per backend and mode, from the scenes ledger (status 'ok'): megapixels per
-- second over all scenes (sum MP / sum s) and the median of per-scene rates. `seconds` is a
-- scene's wall time from planning its regions to writing its rows (reads and queueing included;
-- scenes run side by side overlap, so sum MP / sum s is a lower bound on the run's throughput).
-- Reads views/latest_scenes.sql (latest attempts win).
SELECT backend,
       mode,
       count(*) AS scenes,
       round(sum(megapixels), 1) AS megapixels,
       round(sum(seconds), 1) AS seconds,
       round(sum(megapixels) / nullif(sum(seconds), 0), 2) AS mp_per_s,
       round(median(megapixels / nullif(seconds, 0)), 2) AS median_scene_mp_per_s
FROM latest_scenes
WHERE status = 'ok'
GROUP BY backend, mode
ORDER BY mp_per_s DESC NULLS LAST
