quant $SHARED/real-gguf/source/model-f32.gguf --plan mixed --plan-file $TMP/mixed.plan -q
