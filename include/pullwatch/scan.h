/* `pullwatch scan` as an output: the findings emitted and one row per image record
 * judged, printed at the end as a table or a JSON array. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "pullwatch/agent.h"
#include "pullwatch/observation.h"

typedef struct ScanReport ScanReport;

/* rows: keep one row per image record (the table prints them); without, they are only
 * counted (the JSON array holds findings only: 10,000 rows were 10,000 jansson objects). */
int scan_report_new(ScanReport **ret, bool rows);
ScanReport *scan_report_free(ScanReport *s);

/* A finding (f borrowed; pull records are not findings and are left out). */
void scan_report_finding(ScanReport *s, const Finding *f);
/* An image record judged, with its findings (borrowed). */
void scan_report_row(ScanReport *s, const Observation *o, const Finding *fs, size_t n);

/* Print the table or the JSON array of findings; returns how many findings there are. */
size_t scan_report_print(const ScanReport *s, ScanFormat format, FILE *out);
