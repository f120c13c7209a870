"""Spark Connect client: connects to the URL given and counts spark.range(10)."""

import sys

from pyspark.sql import SparkSession

spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
print(f"COUNT={spark.range(10).count()}")
