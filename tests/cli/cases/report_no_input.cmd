report -o out
