recipe explain "$(cp "$SHARED"/recipes/real/della_linear-filtered-weights-angelslayer.yml . && echo della_linear-filtered-weights-angelslayer.yml)" --layers 1 --json -
