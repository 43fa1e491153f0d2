/* cmd_merge_results.c - placeholder until the command lands. */
#include <stdio.h>

#include "cli.h"
#include "mergescope/banned.h"

int cmd_merge_results(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "mergescope: 'merge_results' is not implemented yet\n");
    return MS_EXIT_FAIL;
}
