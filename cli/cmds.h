/*
 * cmds.h - the timeglass subcommands. Each takes the arguments after the
 * program name (argv[0] is the command's own name), returns the process exit
 * status, and prints its help with *_usage().
 */
#ifndef TG_CMDS_H
#define TG_CMDS_H

#include <stdio.h>

int cmd_run(int argc, char **argv);
int cmd_requests(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_ci(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_queries(int argc, char **argv);
int cmd_spans(int argc, char **argv);
int cmd_flame(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);

void cmd_run_usage(FILE *f);
void cmd_requests_usage(FILE *f);
void cmd_runs_usage(FILE *f);
void cmd_ci_usage(FILE *f);
void cmd_score_usage(FILE *f);
void cmd_queries_usage(FILE *f);
void cmd_spans_usage(FILE *f);
void cmd_flame_usage(FILE *f);
void cmd_export_usage(FILE *f);
void cmd_bench_usage(FILE *f);

#endif
