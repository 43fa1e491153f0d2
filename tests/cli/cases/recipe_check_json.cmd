recipe check "$(cp "$SHARED"/recipes/real/ties-typo-nomalize-qwen25.yml . && echo ties-typo-nomalize-qwen25.yml)" --json - 2>&1
