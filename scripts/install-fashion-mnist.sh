#!/usr/bin/env bash
# Installs the whole of Fashion-MNIST (Debian's dataset-fashion-mnist: four gzipped IDX files in
# /usr/share/datasets/fashion-mnist), which `peftsharp study many-shot` reads and `peftsharp suite build` re-extracts
# the shipped fashion tasks from. Nothing else needs it: the tests make their own tiny IDX files. Debian 12; run as root.
set -euo pipefail
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "dataset-fashion-mnist is installed"
  exit 0
fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dataset-fashion-mnist
