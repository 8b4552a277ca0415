#!/bin/sh
# The official redis image's entrypoint, the part docker-compose.yml relies on: `redis-server`
# runs as user redis, and with no config file and no password Redis would refuse clients from
# other containers (protected mode), so, as there, it is turned off unless the command sets it.
set -eu
case ${1:-redis-server} in -*) set -- redis-server "$@" ;; esac
if [ "$1" = redis-server ]; then
    case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"
