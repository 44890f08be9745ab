-- The latest attempt of each scene key wins (reports/queries/README.md, "Reruns"): the view
-- every example query reads scenes from. load_query() puts it before them; with the duckdb CLI,
-- run it first.
CREATE OR REPLACE TEMP VIEW latest_scenes AS
SELECT * FROM read_parquet('{reports}/scenes/dt=*/*.parquet', hive_partitioning = true, union_by_name = true)
QUALIFY row_number() OVER (PARTITION BY scene_key ORDER BY finished_at DESC, run_id DESC) = 1;
