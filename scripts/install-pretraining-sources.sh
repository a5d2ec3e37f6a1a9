#!/usr/bin/env bash
# Installs what `peftsharp pretrain` renders and crops: the font packages and wallpaper packages the shipped default
# backbone was trained on (models/README.md). Only pretraining needs them; `bench`, the tests and every other verb
# run on the shipped weights and suite data. Debian 12; run as root.
set -euo pipefail
packages=(
  # fonts for GlyphSource
  fonts-dejavu-core fonts-dejavu-extra fonts-noto-core fonts-noto-cjk fonts-liberation2 fonts-freefont-ttf
  fonts-urw-base35 fonts-croscore fonts-crosextra-carlito fonts-crosextra-caladea fonts-ipafont-gothic
  fonts-ipafont-mincho fonts-wqy-zenhei fonts-cantarell fonts-roboto-unhinted
  # pictures for PhotoSource
  mate-backgrounds plasma-workspace-wallpapers
)
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
