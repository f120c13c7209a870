"""history workload: an application whose event log goes to the directory given by
spark.eventLog.dir (s3a://…). Usage: event_log_app.py APP_NAME"""

import sys

from ocf_s3 import session

spark = session(sys.argv[1])
total = spark.range(0, 10_000, numPartitions=2).selectExpr("sum(id)").first()[0]
print(f"EVENT LOG APP {spark.sparkContext.appName} sum={total} "
      f"log dir={spark.sparkContext.getConf().get('spark.eventLog.dir')}")
spark.stop()
