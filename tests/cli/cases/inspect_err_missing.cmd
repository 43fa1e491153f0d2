inspect $TMP/does-not-exist.safetensors
