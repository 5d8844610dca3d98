#!/usr/bin/env bash
# Starts PostgreSQL (127.0.0.1:5432) and Mosquitto (127.0.0.1:1883) when they are not running.
set -u
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  echo "starting PostgreSQL"
  if ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi
if ! port_open 1883; then
  echo "starting Mosquitto"
  if command -v mosquitto >/dev/null 2>&1; then
    mosquitto -d -c /etc/mosquitto/mosquitto.conf || true
  fi
fi
for i in $(seq 1 30); do
  port_open 5432 && port_open 1883 && exit 0
  sleep 1
done
port_open 5432 || echo "WARNING: PostgreSQL is not reachable on 127.0.0.1:5432"
port_open 1883 || echo "WARNING: Mosquitto is not reachable on 127.0.0.1:1883"
exit 0
