audit $GEN/tiny/recipes/passthrough.yml --models-dir $GEN -q
