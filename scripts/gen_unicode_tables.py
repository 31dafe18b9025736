#!/usr/bin/env python3
"""Generates src/tokenizer/unicode_data.cpp: the Unicode tables vireo's tokenizers need.

Usage: scripts/gen_unicode_tables.py [UCD_DIR] [--compare LLAMA_UNICODE_DATA_CPP] > src/tokenizer/unicode_data.cpp

UCD_DIR holds the Unicode Character Database files (Debian's `unicode-data` package installs them in
/usr/share/unicode, the default). The tables follow llama.cpp's definitions (its gen-unicode-data.py), because
vireo must tokenize exactly as llama.cpp does:
  - a flag per code point: the general category collapsed to N/L/Z/M/P/S/C (Cn = "undefined"), plus
    llama.cpp's fixed White_Space list;
  - the simple lowercase mapping (UnicodeData.txt field 13);
  - "nfd": the FIRST code point of the canonical decomposition (llama.cpp's WordPiece accent stripping
    keeps only that one);
and add what Hugging Face's NFC normalizer needs (canonical decompositions, combining classes, primary
composites).

llama.cpp's tables are from Unicode 15.1; Debian bookworm ships the 15.0 database, so the three ranges
that 15.1 added are applied here (each is one general category). --compare checks the generated flags,
lowercase and nfd tables against llama.cpp's src/unicode-data.cpp (read only to verify, never copied) and
exits non-zero on any difference.
"""
from __future__ import annotations

import sys
from pathlib import Path

MAX_CP = 0x110000

FLAG_UNDEFINED, FLAG_NUMBER, FLAG_LETTER, FLAG_SEPARATOR = 0x0001, 0x0002, 0x0004, 0x0008
FLAG_MARK, FLAG_PUNCTUATION, FLAG_SYMBOL, FLAG_CONTROL = 0x0010, 0x0020, 0x0040, 0x0080
FLAG_WHITESPACE = 0x0100

CATEGORY_FLAG = {
    "Cn": FLAG_UNDEFINED, "Cc": FLAG_CONTROL, "Cf": FLAG_CONTROL, "Co": FLAG_CONTROL, "Cs": FLAG_CONTROL,
    "Ll": FLAG_LETTER, "Lm": FLAG_LETTER, "Lo": FLAG_LETTER, "Lt": FLAG_LETTER, "Lu": FLAG_LETTER,
    "Mc": FLAG_MARK, "Me": FLAG_MARK, "Mn": FLAG_MARK,
    "Nd": FLAG_NUMBER, "Nl": FLAG_NUMBER, "No": FLAG_NUMBER,
    "Pc": FLAG_PUNCTUATION, "Pd": FLAG_PUNCTUATION, "Pe": FLAG_PUNCTUATION, "Pf": FLAG_PUNCTUATION,
    "Pi": FLAG_PUNCTUATION, "Po": FLAG_PUNCTUATION, "Ps": FLAG_PUNCTUATION,
    "Sc": FLAG_SYMBOL, "Sk": FLAG_SYMBOL, "Sm": FLAG_SYMBOL, "So": FLAG_SYMBOL,
    "Zl": FLAG_SEPARATOR, "Zp": FLAG_SEPARATOR, "Zs": FLAG_SEPARATOR,
}

# Unicode 15.1 additions (first, last, category): CJK Extension I, four IDS operators, one CJK stroke.
UNICODE_15_1_ADDITIONS = [(0x2EBF0, 0x2EE5D, "Lo"), (0x2FFC, 0x2FFF, "So"), (0x31EF, 0x31EF, "So")]

# llama.cpp's whitespace set (PropList.txt White_Space).
WHITESPACE = list(range(0x0009, 0x000D + 1)) + list(range(0x2000, 0x200A + 1)) + [
    0x0020, 0x0085, 0x00A0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]

HANGUL_S_BASE, HANGUL_L_BASE, HANGUL_V_BASE, HANGUL_T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
HANGUL_S_COUNT, HANGUL_N_COUNT, HANGUL_T_COUNT = 11172, 588, 28


def read_unicode_data(ucd: Path):
    """Yields (cp, category, ccc, canonical decomposition or None, simple lowercase or 0)."""
    first = None
    for line in (ucd / "UnicodeData.txt").read_text().splitlines():
        f = line.split(";")
        cp = int(f[0], 16)
        name, cat, ccc, decomp, lower = f[1], f[2], int(f[3]), f[5], int(f[13] or "0", 16)
        canonical = [int(x, 16) for x in decomp.split()] if decomp and not decomp.startswith("<") else None
        if name.endswith(", First>"):
            first = cp
            continue
        if name.endswith(", Last>"):
            for c in range(first, cp):
                yield c, cat, ccc, None, 0
        yield cp, cat, ccc, canonical, lower


def read_full_composition_exclusions(ucd: Path) -> set[int]:
    out = set()
    for line in (ucd / "DerivedNormalizationProps.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        fields = [x.strip() for x in line.split(";")]
        if len(fields) >= 2 and fields[1] == "Full_Composition_Exclusion":
            rng = fields[0].split("..")
            lo, hi = int(rng[0], 16), int(rng[-1], 16)
            out.update(range(lo, hi + 1))
    return out


def build(ucd: Path):
    flags = [FLAG_UNDEFINED] * MAX_CP
    ccc = [0] * MAX_CP
    decomp: dict[int, list[int]] = {}
    lower: dict[int, int] = {}
    for cp, cat, c, canonical, low in read_unicode_data(ucd):
        flags[cp] = CATEGORY_FLAG[cat]
        ccc[cp] = c
        if canonical:
            decomp[cp] = canonical
        if low:
            lower[cp] = low
    for lo, hi, cat in UNICODE_15_1_ADDITIONS:
        for cp in range(lo, hi + 1):
            if flags[cp] == FLAG_UNDEFINED:
                flags[cp] = CATEGORY_FLAG[cat]
    for cp in WHITESPACE:
        flags[cp] |= FLAG_WHITESPACE

    def first_of_nfd(cp: int) -> int:
        if HANGUL_S_BASE <= cp < HANGUL_S_BASE + HANGUL_S_COUNT:
            return HANGUL_L_BASE + (cp - HANGUL_S_BASE) // HANGUL_N_COUNT
        while cp in decomp:
            cp = decomp[cp][0]
        return cp

    nfd_first = {}
    for cp in range(MAX_CP):
        f = first_of_nfd(cp)
        if f != cp:
            nfd_first[cp] = f

    exclusions = read_full_composition_exclusions(ucd)
    compose = sorted((d[0], d[1], cp) for cp, d in decomp.items() if len(d) == 2 and cp not in exclusions)
    return flags, lower, nfd_first, decomp, ccc, compose


def ranges_of(values: list[int]):
    """(start, value) runs over the whole code space."""
    out = [(0, values[0])]
    for cp in range(1, MAX_CP):
        if values[cp] != out[-1][1]:
            out.append((cp, values[cp]))
    return out


def emit(rows: list[str], per_line: int) -> str:
    lines = []
    for i in range(0, len(rows), per_line):
        lines.append("    " + " ".join(rows[i:i + per_line]))
    return "\n".join(lines)


def generate(ucd: Path) -> str:
    flags, lower, nfd_first, decomp, ccc, compose = build(ucd)
    flag_ranges = ranges_of(flags)
    nfd_ranges = []  # (first, last, nfd) runs of consecutive code points with the same first code point
    for cp in sorted(nfd_first):
        if nfd_ranges and nfd_ranges[-1][1] == cp - 1 and nfd_ranges[-1][2] == nfd_first[cp]:
            nfd_ranges[-1][1] = cp
        else:
            nfd_ranges.append([cp, cp, nfd_first[cp]])
    ccc_ranges = [(s, v) for s, v in ranges_of(ccc)]
    out = []
    out.append("// Generated by scripts/gen_unicode_tables.py from the Unicode Character Database "
               "(15.0 + the 15.1 additions). Do not edit.")
    out.append('#include "tokenizer/unicode_data.h"\n')
    out.append("namespace vireo::unicode_data {\n")
    out.append(f"// {len(flag_ranges)} runs: first code point, flags (until the next run)")
    out.append("const FlagRun kFlagRuns[] = {")
    out.append(emit([f"{{0x{s:X}, 0x{v:X}}}," for s, v in flag_ranges], 8))
    out.append("};\n")
    out.append("const CodepointPair kLowercase[] = {")
    out.append(emit([f"{{0x{a:X}, 0x{b:X}}}," for a, b in sorted(lower.items())], 8))
    out.append("};\n")
    out.append("const NfdRun kNfdFirst[] = {")
    out.append(emit([f"{{0x{a:X}, 0x{b:X}, 0x{c:X}}}," for a, b, c in nfd_ranges], 6))
    out.append("};\n")
    out.append("const Decomposition kDecompositions[] = {")
    out.append(emit([f"{{0x{cp:X}, 0x{d[0]:X}, 0x{(d[1] if len(d) > 1 else 0):X}}},"
                     for cp, d in sorted(decomp.items())], 6))
    out.append("};\n")
    out.append("const CccRun kCombiningClass[] = {")
    out.append(emit([f"{{0x{s:X}, {v}}}," for s, v in ccc_ranges], 8))
    out.append("};\n")
    out.append("const Composition kCompositions[] = {")
    out.append(emit([f"{{0x{a:X}, 0x{b:X}, 0x{c:X}}}," for a, b, c in compose], 6))
    out.append("};\n")
    for name in ("kFlagRuns", "kLowercase", "kNfdFirst", "kDecompositions", "kCombiningClass", "kCompositions"):
        out.append(f"const uint32_t {name}Count = sizeof({name}) / sizeof({name}[0]);")
    out.append("\n}  // namespace vireo::unicode_data")
    return "\n".join(out) + "\n"


def compare_with_llama(ucd: Path, llama_cpp: Path) -> int:
    import re
    src = llama_cpp.read_text()

    def section(name: str) -> str:
        i = src.index(name)
        return src[i:src.index("};", i)]

    flags, lower, nfd_first, *_ = build(ucd)
    pairs = [(int(a, 16), int(b, 16)) for a, b in re.findall(r"\{0x([0-9A-F]+), 0x([0-9A-F]+)\}",
                                                             section("unicode_ranges_flags"))]
    theirs = [0] * MAX_CP
    for (s, f), (e, _) in zip(pairs, pairs[1:]):
        for cp in range(s, e):
            theirs[cp] = f
    for cp in [int(x, 16) for x in re.findall(r"0x([0-9A-F]+)", section("unicode_set_whitespace"))]:
        theirs[cp] |= FLAG_WHITESPACE
    bad = [cp for cp in range(MAX_CP) if theirs[cp] != flags[cp]]
    their_lower = dict((int(a, 16), int(b, 16)) for a, b in re.findall(
        r"\{0x([0-9A-F]+), 0x([0-9A-F]+)\}", section("unicode_map_lowercase")))
    bad_lower = sorted(set(their_lower.items()) ^ set(lower.items()))
    their_nfd = {}
    for a, b, c in re.findall(r"\{0x([0-9A-F]+), 0x([0-9A-F]+), 0x([0-9A-F]+)\}", section("unicode_ranges_nfd")):
        for cp in range(int(a, 16), int(b, 16) + 1):
            if cp != int(c, 16):
                their_nfd[cp] = int(c, 16)
    bad_nfd = sorted(set(their_nfd.items()) ^ set(nfd_first.items()))
    print(f"flags: {len(bad)} code points differ; lowercase: {len(bad_lower)} entries differ; "
          f"nfd: {len(bad_nfd)} entries differ", file=sys.stderr)
    for label, items in (("flags", [hex(c) for c in bad[:20]]), ("lowercase", bad_lower[:20]), ("nfd", bad_nfd[:20])):
        if items:
            print(f"  {label}: {items}", file=sys.stderr)
    return 1 if bad or bad_lower or bad_nfd else 0


def main() -> int:
    args = sys.argv[1:]
    compare = None
    if "--compare" in args:
        i = args.index("--compare")
        compare = Path(args[i + 1])
        del args[i:i + 2]
    ucd = Path(args[0]) if args else Path("/usr/share/unicode")
    if not (ucd / "UnicodeData.txt").exists():
        print(f"{ucd}/UnicodeData.txt not found (apt-get install unicode-data)", file=sys.stderr)
        return 2
    if compare:
        return compare_with_llama(ucd, compare)
    sys.stdout.write(generate(ucd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
