/*
 * recipe_method.c - the table of merge methods and the parameters each one
 * reads (scope, required, default), per mergekit-facts.md sections 2-4.
 */
#include <string.h>

#include "mergescope/recipe.h"
#include "mergescope/banned.h"

static const char *const method_names[MS_METHOD_COUNT] = {
    "linear", "slerp", "nuslerp", "passthrough", "model_stock", "arcee_fusion",
    "karcher", "task_arithmetic", "ties", "dare_ties", "dare_linear",
    "breadcrumbs", "breadcrumbs_ties", "della", "della_linear", "multislerp",
    "nearswap", "sce", "ram", "ramplus_tl",
};

static const char *const param_names[MS_PARAM_COUNT] = {
    "weight", "density", "epsilon", "gamma", "lambda", "t", "normalize",
    "rescale", "int8_mask", "select_topk", "scale", "filter_wise",
    "nuslerp_flatten", "nuslerp_row_wise", "normalize_weights", "eps",
    "max_iter", "tol", "r", "alpha",
};

const char *ms_method_name(ms_merge_method m)
{
    return (unsigned)m < MS_METHOD_COUNT ? method_names[m] : NULL;
}

ms_merge_method ms_method_from_name(const char *name)
{
    for (int i = 0; name && i < MS_METHOD_COUNT; i++)
        if (strcmp(name, method_names[i]) == 0)
            return (ms_merge_method)i;
    return MS_METHOD_UNKNOWN;
}

bool ms_method_is_gta(ms_merge_method m)
{
    return m >= MS_METHOD_TASK_ARITHMETIC && m <= MS_METHOD_DELLA_LINEAR;
}

bool ms_method_needs_base(ms_merge_method m)
{
    switch (m) {
    case MS_METHOD_SLERP: case MS_METHOD_NEARSWAP: case MS_METHOD_SCE:
    case MS_METHOD_MODEL_STOCK: case MS_METHOD_ARCEE_FUSION:
    case MS_METHOD_RAM: case MS_METHOD_RAMPLUS_TL:
        return true;
    default:
        return ms_method_is_gta(m);
    }
}

const char *ms_param_name(ms_param p)
{
    return (unsigned)p < MS_PARAM_COUNT ? param_names[p] : NULL;
}

ms_param ms_param_from_name(const char *name)
{
    for (int i = 0; name && i < MS_PARAM_COUNT; i++)
        if (strcmp(name, param_names[i]) == 0)
            return (ms_param)i;
    return MS_PARAM_UNKNOWN;
}

static ms_param_def global(double dflt)
{
    ms_param_def d = {MS_SCOPE_GLOBAL, false, true, dflt};
    return d;
}

static ms_param_def per_model(double dflt)
{
    ms_param_def d = {MS_SCOPE_MODEL, false, true, dflt};
    return d;
}

static ms_param_def required(ms_param_scope scope)
{
    ms_param_def d = {scope, true, false, 0.0};
    return d;
}

static ms_param_def gta_param(ms_merge_method m, ms_param p)
{
    static const ms_param_def unused;
    bool ties_like = m == MS_METHOD_TIES || m == MS_METHOD_DELLA;
    bool rescales = m == MS_METHOD_DARE_TIES || m == MS_METHOD_DARE_LINEAR ||
                    m == MS_METHOD_DELLA || m == MS_METHOD_DELLA_LINEAR;
    switch (p) {
    case MS_PARAM_INT8_MASK: return global(0);
    case MS_PARAM_NORMALIZE: return global(ties_like ? 1 : 0);
    case MS_PARAM_RESCALE: return global(rescales ? 1 : 0);
    case MS_PARAM_LAMBDA: return global(1);
    case MS_PARAM_WEIGHT: return required(MS_SCOPE_MODEL);
    case MS_PARAM_DENSITY: return per_model(1);
    case MS_PARAM_GAMMA:
        if (m == MS_METHOD_BREADCRUMBS || m == MS_METHOD_BREADCRUMBS_TIES)
            return per_model(0.01);
        return unused;
    case MS_PARAM_EPSILON:
        if (m == MS_METHOD_DELLA || m == MS_METHOD_DELLA_LINEAR)
            return per_model(0.15);
        return unused;
    default:
        return unused;
    }
}

ms_param_def ms_method_param(ms_merge_method m, ms_param p)
{
    static const ms_param_def unused;
    if (ms_method_is_gta(m))
        return gta_param(m, p);
    switch (m) {
    case MS_METHOD_LINEAR:
        if (p == MS_PARAM_NORMALIZE) return global(1);
        if (p == MS_PARAM_WEIGHT) return required(MS_SCOPE_MODEL);
        break;
    case MS_METHOD_SLERP:
    case MS_METHOD_NEARSWAP:
        if (p == MS_PARAM_T) return required(MS_SCOPE_GLOBAL);
        break;
    case MS_METHOD_NUSLERP:
        if (p == MS_PARAM_WEIGHT) return required(MS_SCOPE_MODEL);
        if (p == MS_PARAM_NUSLERP_FLATTEN) return global(1);
        if (p == MS_PARAM_NUSLERP_ROW_WISE) return global(0);
        break;
    case MS_METHOD_PASSTHROUGH:
        if (p == MS_PARAM_SCALE) {
            ms_param_def d = {MS_SCOPE_MODEL, false, false, 0.0};
            return d;
        }
        break;
    case MS_METHOD_MODEL_STOCK:
        if (p == MS_PARAM_FILTER_WISE) return global(0);
        break;
    case MS_METHOD_KARCHER:
        if (p == MS_PARAM_MAX_ITER) return global(10);
        if (p == MS_PARAM_TOL) return global(1e-5);
        break;
    case MS_METHOD_MULTISLERP:
        if (p == MS_PARAM_WEIGHT) return required(MS_SCOPE_MODEL);
        if (p == MS_PARAM_NORMALIZE_WEIGHTS) return global(1);
        if (p == MS_PARAM_EPS) return global(1e-8);
        break;
    case MS_METHOD_SCE:
        if (p == MS_PARAM_INT8_MASK) return global(0);
        if (p == MS_PARAM_SELECT_TOPK) return global(1);
        break;
    case MS_METHOD_RAM:
        if (p == MS_PARAM_EPSILON) return global(1e-5);
        break;
    case MS_METHOD_RAMPLUS_TL:
        if (p == MS_PARAM_EPSILON) return global(1e-5);
        if (p == MS_PARAM_R) return global(0.1);
        if (p == MS_PARAM_ALPHA) return global(0.2);
        break;
    default:
        break;
    }
    return unused;
}
