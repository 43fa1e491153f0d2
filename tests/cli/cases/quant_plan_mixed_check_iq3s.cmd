quant --check-plan $TMP/mixed.plan $SHARED/real-gguf/gguf/model-IQ3_S.gguf -q
