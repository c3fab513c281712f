#!/usr/bin/env bash
# Install the SLURM profile into the user's Snakemake config directory, so that
# `snakemake --profile slurm` works from the workflow's directory.
#   bash tools/install_profile.sh [--force]
# Destination: ${XDG_CONFIG_HOME:-~/.config}/snakemake/slurm
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="${XDG_CONFIG_HOME:-$HOME/.config}/snakemake/slurm"
if [[ -e "$dest" && "${1:-}" != "--force" ]]; then
    echo "install_profile: $dest exists; use --force to replace it" >&2
    exit 1
fi
mkdir -p "$dest"
cp "$here/profiles/slurm/config.v8+.yaml" "$dest/"
echo "installed the SLURM profile in $dest: edit slurm_partition (and slurm_account) there"
