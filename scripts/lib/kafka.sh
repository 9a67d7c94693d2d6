# shellcheck shell=bash
# Sourced by scripts/infra.sh and scripts/cluster/kafka.sh after lib/common.sh and INFRA:
# the broker jars (fetched once into $INFRA/kafka/libs) and a broker's log configuration.
KAFKA_LIBS="$INFRA/kafka/libs"

fetch_kafka_jars() {
  command -v java >/dev/null || die "java (17+) is needed to run Kafka"
  [ -f "$KAFKA_LIBS/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn (Apache Maven) is needed to fetch the Kafka jars"
  log "fetching the Kafka broker jars from Maven Central into $KAFKA_LIBS (once, ~45 MB)"
  mkdir -p "$INFRA/kafka"
  rm -rf "$KAFKA_LIBS"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >"$INFRA/kafka/mvn.log" 2>&1 \
    || fail_with_log "mvn could not fetch the Kafka jars" "$INFRA/kafka/mvn.log"
  touch "$KAFKA_LIBS/.complete"
}

# The broker's log4j2 configuration: INFO of the broker to DIR/server.log.
write_kafka_log4j() { # dir
  cat >"$1/log4j2.properties" <<EOL
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $1/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
EOL
}
