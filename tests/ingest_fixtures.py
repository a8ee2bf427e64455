"""A folder of real files for the ingestion tests: Markdown, HTML, text, DOCX and PDF written by
their libraries (python-docx, fpdf2), plus broken ones. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

MD = """# Solar System notes

## Jupiter

Jupiter is the largest planet in the Solar System. It is a gas giant with a mass more than two
and a half times that of all the other planets combined.

## Mars

Mars has two small moons, Phobos and Deimos. Olympus Mons on Mars is the tallest volcano known.
"""

HTML = """<html><head><title>Telescopes</title></head><body>
<h1>Telescopes</h1>
<h2>Hubble</h2>
<p>The Hubble Space Telescope was launched into low Earth orbit in 1990 and is still used.</p>
<h2>Webb</h2>
<p>The James Webb Space Telescope observes in the infrared from the L2 point.</p>
</body></html>
"""

TXT = "Saturn has 146 known moons. Titan, its largest moon, has a thick nitrogen atmosphere.\n"


def write_docx(path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_heading("Comets", level=1)
    d.add_heading("Halley", level=2)
    d.add_paragraph("Halley's Comet returns to the inner Solar System every 76 years.")
    d.add_heading("Hale-Bopp", level=2)
    d.add_paragraph("Comet Hale-Bopp was visible to the naked eye for 18 months in 1996 and 1997.")
    d.save(str(path))


def write_pdf(path: Path, pages: list[str], password: str | None = None) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    if password is not None:
        from fpdf.enums import EncryptionMethod

        pdf.set_encryption(
            owner_password=password, user_password=password, encryption_method=EncryptionMethod.RC4
        )
    pdf.output(str(path))


def make_folder(root: Path, broken: bool = True) -> Path:
    """``root/notes`` with one file per format (and, with ``broken``, five bad files)."""
    notes = root / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "planets.md").write_text(MD, encoding="utf-8")
    (notes / "telescopes.html").write_text(HTML, encoding="utf-8")
    (notes / "sub" / "saturn.txt").write_text(TXT, encoding="utf-8")
    write_docx(notes / "comets.docx")
    write_pdf(
        notes / "moon.pdf",
        [
            "The Moon is Earth's only natural satellite.",
            "Apollo 11 landed on the Moon in July 1969; Neil Armstrong first walked on it.",
        ],
    )
    (notes / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))  # unsupported: ignored
    if broken:
        (notes / "empty.md").write_bytes(b"")
        (notes / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
        (notes / "binary.txt").write_bytes(b"\x00\x01\x02garbage\x00" * 20)
        (notes / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage")
        write_pdf(notes / "locked.pdf", ["secret"], password="pw")
    return notes
