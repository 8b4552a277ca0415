#!/bin/sh
# `rabbitmq-server` as user rabbitmq (Debian's wrapper would `su` and leave itself as PID 1);
# any other command as given.
set -eu
if [ "${1:-rabbitmq-server}" = rabbitmq-server ]; then
    shift $(( $# > 0 ? 1 : 0 ))
    chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
fi
exec "$@"
