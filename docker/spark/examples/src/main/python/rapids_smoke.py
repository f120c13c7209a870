"""GPU smoke test: a small aggregation with the RAPIDS plugin on (the GPU images'
entrypoint passes spark.plugins in driver mode); fails unless the plan ran on the GPU."""

from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("rapids-smoke").getOrCreate()
df = spark.range(0, 100000).selectExpr("id % 10 AS k", "id AS v").groupBy("k").sum("v")
plan = df._jdf.queryExecution().executedPlan().toString()
rows = sorted(df.collect())
assert len(rows) == 10 and sum(r[1] for r in rows) == sum(range(100000)), rows
assert "Gpu" in plan, plan
print("RAPIDS SMOKE OK", rows[0])
spark.stop()
