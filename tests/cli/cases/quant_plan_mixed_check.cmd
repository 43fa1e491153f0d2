quant --check-plan $TMP/mixed.plan $SHARED/real-gguf/gguf/model-MIXED.gguf -q
