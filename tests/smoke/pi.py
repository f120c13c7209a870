"""Pi estimate in local mode: the classic Spark smoke job."""

import random

from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("ociforge-pi").getOrCreate()
n = 200_000
def inside(_):
    x, y = random.random(), random.random()
    return 1 if x * x + y * y <= 1 else 0
count = spark.sparkContext.parallelize(range(n), 4).map(inside).sum()
print(f"PI={4.0 * count / n:.5f}")
spark.stop()
