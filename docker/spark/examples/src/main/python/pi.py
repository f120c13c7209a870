"""Estimate Pi with Spark: the smoke job `ociforge test` runs in every Spark image.

    spark-submit --master 'local[2]' $SPARK_HOME/examples/src/main/python/pi.py [partitions]
"""

import random
import sys

from pyspark.sql import SparkSession


def inside(_: int) -> int:
    x, y = random.random() * 2 - 1, random.random() * 2 - 1
    return 1 if x * x + y * y <= 1 else 0


if __name__ == "__main__":
    partitions = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    n = 100_000 * partitions
    spark = SparkSession.builder.appName("PythonPi").getOrCreate()
    count = spark.sparkContext.parallelize(range(n), partitions).map(inside).sum()
    print(f"Pi is roughly {4.0 * count / n:.5f}")
    spark.stop()
