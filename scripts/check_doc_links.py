#!/usr/bin/env python3
"""Fails on intra-doc links that rustdoc left as text in rendered HTML.

rustdoc's own lint (`broken_intra_doc_links`) does not look at the docs of
items re-exported from another crate, which the facade inlines: a link
that resolved in the defining crate may not resolve here, and then shows
as literal brackets, `[Foo]` or `[`Foo`]`. This scans every page under the
given directory for such brackets outside code blocks and code spans.

Usage: check_doc_links.py target/doc/socketserver
"""
import html.parser
import pathlib
import re
import sys

# A bracketed path as an intra-doc link is written: `[Foo]`, `[Foo::bar]`,
# `[foo()]`, `[mod@foo]`; never with spaces or commas.
PATH = r"(?:[a-z]+@)?[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*(?:\(\)|!)?"
BARE = re.compile(r"\[(" + PATH + r")\]")


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(html.parser.HTMLParser):
    """Collects the unresolved links of one page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []  # open elements: (tag, whether it holds code)
        self.pre = 0  # inside <pre> or a signature (`code-header`)
        self.code = 0  # inside <code>
        self.text = ""  # text since the last code span, outside code
        self.span = ""  # the current code span's text
        self.after_span = None  # a code span preceded by "[": its text
        self.found = []

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        # Code, signatures, scripts, and the text of links that did resolve.
        block = tag in ("pre", "script", "style", "a") or "code-header" in classes
        self.stack.append((tag, block))
        if block:
            self.pre += 1
        elif tag == "code":
            self.code += 1
            self.span = ""

    def handle_endtag(self, tag):
        if tag in VOID or not any(t == tag for t, _ in self.stack):
            return
        while self.stack:
            open_tag, block = self.stack.pop()
            if block:
                self.pre -= 1
            if open_tag == tag:
                break
        if tag == "code" and self.code:
            self.code -= 1
            if not self.pre and self.text.endswith("["):
                self.after_span = self.span
            self.text = ""

    def handle_data(self, data):
        if self.pre:
            return
        if self.code:
            self.span += data
            return
        if self.after_span is not None:
            if data.startswith("]") and re.fullmatch(PATH, self.after_span):
                self.found.append("[`" + self.after_span + "`]")
            self.after_span = None
        self.text += data
        self.found.extend("[" + m + "]" for m in BARE.findall(data))


def main(root):
    pages = sorted(pathlib.Path(root).rglob("*.html"))
    if not pages:
        sys.exit(f"no HTML under {root}: build the docs first")
    broken = 0
    for page in pages:
        parser = Page()
        parser.feed(page.read_text(encoding="utf-8"))
        for link in sorted(set(parser.found)):
            print(f"{page}: unresolved link {link}")
            broken += 1
    if broken:
        sys.exit(f"{broken} unresolved intra-doc link(s) in {len(pages)} pages")
    print(f"{len(pages)} pages, no unresolved intra-doc link")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/doc/socketserver")
