provenance --emit-recipe $TMP/out.yml merged
