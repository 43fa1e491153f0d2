report "$here/../data/report/audit.json" "$here/../data/report/attribute.json" "$here/../data/report/quant.json" "$here/../data/report/recipe.json" -o out
