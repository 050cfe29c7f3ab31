#!/bin/sh
# The SLURM test starts a real single-node cluster (slurmctld, slurmd, slurmdbd with MariaDB for
# sacct, munge): install Debian's packages when a program is missing. Nothing is started here; the
# test fixture starts its own daemons and stops them.
set -eu
PATH="$PATH:/usr/sbin:/sbin"
missing=""
for program in slurmctld slurmd slurmdbd sbatch sacct sacctmgr munged mariadbd mariadb-install-db; do
    command -v "$program" >/dev/null 2>&1 || missing="$missing $program"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "installing Debian's slurm-wlm, slurmdbd, munge and mariadb-server for the SLURM test (missing:$missing)" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    slurm-wlm slurmdbd munge mariadb-server >/dev/null
