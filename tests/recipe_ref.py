#!/usr/bin/python3
"""recipe_ref.py - reference parameter resolution for tests/test_recipe.c.

    recipe_ref.py BENCHDIR RECIPE N_LAYERS

Runs ../shared/bench/ref_merge.py's `plan` (mergekit's planner, parameter
lookup order, filters and gradients, written independently of mergescope)
on RECIPE against stand-in models: every model has a llama layout of
max(N_LAYERS, the largest layer_range end) layers and no weights. Prints
JSON: {"n_layers_out": n, "entries": [{name, layer, models, base,
gparams, tparams}]}, booleans as 1/0 and unset values as null.
"""
import json
import os
import sys


def main():
    bench, recipe_path, n_layers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.path.insert(0, bench)
    import ref_merge  # noqa: E402
    import yaml  # noqa: E402

    with open(recipe_path) as f:
        recipe = yaml.safe_load(f)
    for sl in recipe.get("slices") or []:
        for src in sl["sources"]:
            n_layers = max(n_layers, int(src["layer_range"][1]))

    names = list(ref_merge.PRE_WEIGHTS)
    for i in range(n_layers):
        names += ["model.layers.%d.%s" % (i, s) for s in ref_merge.LAYER_ORDER]
    names += ref_merge.POST_WEIGHTS

    all_names = names

    class Stub:
        config = {"num_hidden_layers": n_layers}
        tensors = dict.fromkeys(all_names)

        def names(self):
            return all_names

    class Resolver(ref_merge.ModelResolver):
        def get(self, name):
            return Stub()

    entries, n_out, _, _ = ref_merge.plan(recipe, Resolver())

    def num(v):
        if v is None:
            return None
        return float(v)

    out = []
    for e in entries:
        out.append({
            "name": e["name"],
            "layer": e["layer"],
            "models": e["models"],
            "base": e["base"],
            "gparams": {k: num(v) for k, v in e["gparams"].items()},
            "tparams": [{k: num(v) for k, v in tp.items()} for tp in e["tparams"]],
        })
    json.dump({"n_layers_out": n_out, "entries": out}, sys.stdout)


if __name__ == "__main__":
    main()
