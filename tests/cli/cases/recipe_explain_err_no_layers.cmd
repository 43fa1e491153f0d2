recipe explain "$(cp "$SHARED"/recipes/mergekit-examples/linear.yml . && echo linear.yml)" 2>&1
