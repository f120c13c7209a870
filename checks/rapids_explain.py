"""gpu workload without a GPU: a query planned by the RAPIDS plugin in its CPU-only
mode (spark.rapids.sql.mode=explainOnly, set by the check). The plugin rewrites
nothing and touches no GPU; with spark.rapids.sql.explain=ALL it logs, per operator,
whether it would run on the GPU. The query itself runs on the CPU; its result is
checked so a broken plan cannot pass."""

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

spark = SparkSession.builder.appName("ociforge-rapids-explain").getOrCreate()
jvm = spark._jvm
conf = spark.sparkContext.getConf()
print("RAPIDS plugins:", conf.get("spark.plugins", "unset"),
      "mode:", conf.get("spark.rapids.sql.mode", "unset"),
      "shim override:", conf.get("spark.rapids.shims-provider-override", "none"))
print("RAPIDS build:", jvm.java.lang.Class.forName("com.nvidia.spark.SQLPlugin")
      .getProtectionDomain().getCodeSource().getLocation().getPath())
df = (spark.range(0, 100_000, numPartitions=2)
      .select((F.col("id") % 10).alias("k"), (F.col("id") * 2).alias("v"))
      .filter(F.col("v") > 10)
      .groupBy("k").agg(F.sum("v").alias("s"), F.count("*").alias("n"))
      .orderBy("k"))
rows = df.collect()
total = sum(r["s"] for r in rows)
expected = sum(i * 2 for i in range(100_000) if i * 2 > 10)
print(f"RAPIDS EXPLAIN QUERY groups={len(rows)} sum={total} expected={expected}")
spark.stop()
raise SystemExit(0 if (len(rows), total) == (10, expected) else 1)
