audit $GEN/tiny/recipes/task_arithmetic.yml --models-dir $GEN -q
