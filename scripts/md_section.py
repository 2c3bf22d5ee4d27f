"""Writes one generated section of a Markdown file (BENCHMARKS.md) between its markers: replaced in place,
or appended when the file has none yet. Shared by the benchmark report scripts."""


def write_section(md_path, begin, end, lines):
    section = begin + "\n" + "\n".join(lines) + end
    text = open(md_path).read()
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    open(md_path, "w").write(text)
