attribute --recipe $GEN/tiny/recipes/task_arithmetic.yml --models-dir $GEN $GEN/tiny/merged-task_arithmetic -q
