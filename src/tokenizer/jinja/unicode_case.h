// Unicode case-mapping tables with the exact results of V8's String.prototype.toUpperCase and
// toLowerCase (the reference engine is JavaScript). Data in unicode_case_data.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

namespace vireo::jinja::unicode_tables {

// Every code point first, first+stride, ..., last maps to itself + delta.
struct CaseRun {
  uint32_t first;
  uint32_t last;
  uint32_t stride;
  int32_t delta;
};

// A code point that maps to up to three code points (unused slots are 0).
struct CaseMulti {
  uint32_t cp;
  uint32_t to[3];
};

extern const CaseRun kUpperRuns[];
extern const size_t kUpperRunCount;
extern const CaseMulti kUpperMulti[];
extern const size_t kUpperMultiCount;
extern const CaseRun kLowerRuns[];
extern const size_t kLowerRunCount;
extern const CaseMulti kLowerMulti[];
extern const size_t kLowerMultiCount;

}  // namespace vireo::jinja::unicode_tables
