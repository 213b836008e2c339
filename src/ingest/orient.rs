//! pandas' JSON orients other than `records`, read as records: each is one JSON object, the
//! whole file, which [`OrientReader`] takes chunk by chunk and rewrites as the records array
//! (`[{…},{…}]`) that the JSON decoder reads.
//!
//! - `index` (`{"0": {row}, "1": {row}}`) and `table` (`{"schema": {…}, "data": [{row}]}`):
//!   each row object is passed on as it is.
//! - `split` (`{"columns": [names], "index": [labels], "data": [[values]]}`): each row's values
//!   get the column names.
//! - `columns` (`{"name": {"0": value, "1": value}}`, what `df.to_json(path)` writes): column
//!   after column, so the values are held (as their JSON text) until the object ends, then
//!   written out as rows. Every column must list the same row labels in the same order, as
//!   pandas writes them.
//!
//! Values are passed on as their JSON text, never parsed here: the records decoder decides
//! types, nulls and errors as for any records file.

use super::fast::skip_ws;

/// The orients read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orient {
    Split,
    Table,
    Index,
    Columns,
}

impl Orient {
    /// pandas' name for it (`orient="…"`).
    pub fn name(self) -> &'static str {
        match self {
            Orient::Split => "split",
            Orient::Table => "table",
            Orient::Index => "index",
            Orient::Columns => "columns",
        }
    }
}

/// Records written out of a `columns` file at a time.
const COLUMNS_OUT_BYTES: usize = 1 << 20;

/// What the value after a top-level key is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopValue {
    /// A row object (`index`).
    Record,
    /// Skipped whole (`table`'s schema, unknown keys).
    Skip,
    /// `split`'s column names.
    Names,
    /// An array whose elements are each read as `Element`.
    Array(Element),
    /// An object of row label → value (`columns`).
    Column,
}

/// What an element of an array (or an entry of a column object) is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    Record,
    Skip,
    /// A `split` row: an array of values in column order.
    Row,
    /// A `columns` entry: `"label": value`.
    Cell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the object's `{`.
    Start,
    /// Before a key, or (`after_value`) before the `,` or `}` that follows a value.
    Key { after_value: bool },
    Value(TopValue),
    /// In an array (or a column object): before an element, or before the `,` or the end
    /// after one.
    Elements { element: Element, after_value: bool },
    /// After the object's `}`.
    End,
}

/// Rewrites one pandas `orient` JSON object, fed chunk by chunk, as a JSON records array.
pub struct OrientReader {
    orient: Orient,
    state: State,
    /// Bytes fed and not yet read (at most one unfinished value, or a skipped value).
    held: Vec<u8>,
    /// Bytes read before `held` (for messages).
    offset: u64,
    /// Rows written so far.
    rows: u64,
    /// `split`: the column names, each as its JSON string text (quotes included).
    names: Vec<Vec<u8>>,
    /// `columns`: each column's name (JSON text) and values (JSON texts, one after another,
    /// with the end of each).
    columns: Vec<HeldColumn>,
    /// `columns`: the row labels of the first column (JSON texts, with the end of each).
    labels: Vec<u8>,
    label_ends: Vec<usize>,
    /// `columns`, after the end: the next row to write out.
    next_row: usize,
    /// Whether the records text is all given.
    closed: bool,
}

/// A `columns` file's column, held until the object ends.
struct HeldColumn {
    /// Its name, as JSON text.
    name: Vec<u8>,
    /// Its values' JSON texts, one after another; a value that repeats the row before's is
    /// not stored again (text columns repeat a prompt on every row).
    values: Vec<u8>,
    /// Where each row's value ends in `values`. A row whose end is the row before's repeats
    /// its value (a JSON value is never empty); else the value starts at the end before.
    ends: Vec<u32>,
    /// Where the last value stored starts.
    last_start: u32,
    /// While rows are written out: the value of the row before (start, end).
    cursor: (u32, u32),
}

impl OrientReader {
    pub fn new(orient: Orient) -> OrientReader {
        OrientReader {
            orient,
            state: State::Start,
            held: Vec::new(),
            offset: 0,
            rows: 0,
            names: Vec::new(),
            columns: Vec::new(),
            labels: Vec::new(),
            label_ends: Vec::new(),
            next_row: 0,
            closed: false,
        }
    }

    pub fn orient(&self) -> Orient {
        self.orient
    }

    /// Feed the next `chunk`; the records text it completes goes to `out` (`[` first).
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.held.extend_from_slice(chunk);
        self.read(false, out)
    }

    /// The end of the file: the text left is read, and must close the object. The records
    /// text that follows comes from [`rest`](Self::rest).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        self.read(true, out)?;
        if self.state != State::End {
            return Err(format!(
                "the file ends before its JSON object is closed, at byte {}: it is cut short",
                self.offset + self.held.len() as u64
            ));
        }
        Ok(())
    }

    /// After [`finish`](Self::finish): the next piece of the records text (a `columns` file's
    /// rows, about [`COLUMNS_OUT_BYTES`] at a time; then the array's `]`) into `out`; `false`
    /// once all is given.
    pub fn rest(&mut self, out: &mut Vec<u8>) -> bool {
        if self.closed {
            return false;
        }
        if self.orient == Orient::Columns && self.next_row < self.label_ends.len() {
            self.write_columns(out);
            return true;
        }
        out.extend_from_slice(if self.rows == 0 { b"[]" } else { b"]" });
        self.closed = true;
        true
    }

    /// Read what `held` holds, as far as whole values go (`eof`: nothing follows).
    fn read(&mut self, eof: bool, out: &mut Vec<u8>) -> Result<(), String> {
        let held = std::mem::take(&mut self.held);
        let mut at = 0;
        let result = self.read_from(&held, &mut at, eof, out);
        self.offset += at as u64;
        self.held = held;
        self.held.drain(..at);
        result
    }

    fn read_from(&mut self, b: &[u8], at: &mut usize, eof: bool, out: &mut Vec<u8>) -> Result<(), String> {
        loop {
            *at = skip_ws(b, *at);
            let Some(&c) = b.get(*at) else {
                return Ok(());
            };
            let here = self.offset + *at as u64;
            let unexpected = |what: &str| {
                Err(format!(
                    "expected {what} at byte {here}, but found `{}`",
                    String::from_utf8_lossy(&b[*at..(*at + 20).min(b.len())])
                ))
            };
            match self.state {
                State::Start => {
                    if c != b'{' {
                        return unexpected("`{`");
                    }
                    *at += 1;
                    self.state = State::Key { after_value: false };
                }
                State::End => return unexpected("the end of the file"),
                State::Key { after_value } => {
                    if c == b'}' {
                        *at += 1;
                        self.state = State::End;
                        continue;
                    }
                    if after_value {
                        if c != b',' {
                            return unexpected("`,` or `}`");
                        }
                        *at += 1;
                        self.state = State::Key { after_value: false };
                        continue;
                    }
                    if c != b'"' {
                        return unexpected("a key");
                    }
                    let (key_end, value_at) = match key_at(b, *at) {
                        Ok(Some(k)) => k,
                        Ok(None) => return Ok(()),
                        Err(()) => return unexpected("`:` after a key"),
                    };
                    let key = &b[*at..key_end];
                    let value = self.top_value(key)?;
                    if value == TopValue::Column {
                        self.columns.push(HeldColumn {
                            name: key.to_vec(),
                            values: Vec::new(),
                            ends: Vec::new(),
                            last_start: 0,
                            cursor: (0, 0),
                        });
                    }
                    *at = value_at;
                    self.state = State::Value(value);
                }
                State::Value(value) => match value {
                    TopValue::Array(_) | TopValue::Column => {
                        let column = value == TopValue::Column;
                        if c != if column { b'{' } else { b'[' } {
                            return unexpected(if column { "an object of row label → value" } else { "an array" });
                        }
                        *at += 1;
                        self.state = State::Elements {
                            element: element_of(value),
                            after_value: false,
                        };
                    }
                    TopValue::Record | TopValue::Skip | TopValue::Names => {
                        let Some(end) = value_end(b, *at, eof)? else {
                            return Ok(());
                        };
                        let text = &b[*at..end];
                        match value {
                            TopValue::Record => self.record(text, here, out)?,
                            TopValue::Names => {
                                let names: Vec<String> = serde_json::from_slice(text)
                                    .map_err(|e| format!("`columns` is not a list of column names: {e}"))?;
                                self.names = names
                                    .iter()
                                    .map(|n| serde_json::to_vec(n).unwrap_or_default())
                                    .collect();
                            }
                            _ => {}
                        }
                        *at = end;
                        self.state = State::Key { after_value: true };
                    }
                },
                State::Elements { element, after_value } => {
                    let close = if element == Element::Cell { b'}' } else { b']' };
                    if c == close {
                        *at += 1;
                        if element == Element::Cell {
                            self.column_done()?;
                        }
                        self.state = State::Key { after_value: true };
                        continue;
                    }
                    if after_value {
                        if c != b',' {
                            return unexpected(if close == b'}' { "`,` or `}`" } else { "`,` or `]`" });
                        }
                        *at += 1;
                        self.state = State::Elements { element, after_value: false };
                        continue;
                    }
                    let end = if element == Element::Cell {
                        if c != b'"' {
                            return unexpected("a row label");
                        }
                        let (label_end, value_at) = match key_at(b, *at) {
                            Ok(Some(k)) => k,
                            Ok(None) => return Ok(()),
                            Err(()) => return unexpected("`:` after a row label"),
                        };
                        let value_at = skip_ws(b, value_at);
                        if value_at >= b.len() {
                            return Ok(());
                        }
                        let Some(end) = value_end(b, value_at, eof)? else {
                            return Ok(());
                        };
                        self.cell(&b[*at..label_end], &b[value_at..end])?;
                        end
                    } else {
                        let Some(end) = value_end(b, *at, eof)? else {
                            return Ok(());
                        };
                        let text = &b[*at..end];
                        match element {
                            Element::Record => self.record(text, here, out)?,
                            Element::Row => self.row(text, here, out)?,
                            _ => {}
                        }
                        end
                    };
                    *at = end;
                    self.state = State::Elements { element, after_value: true };
                }
            }
        }
    }

    /// How the value of the top-level key `key` (its JSON text) is read.
    fn top_value(&self, key: &[u8]) -> Result<TopValue, String> {
        Ok(match (self.orient, key) {
            (Orient::Index, _) => TopValue::Record,
            (Orient::Columns, _) => TopValue::Column,
            (Orient::Table, b"\"data\"") => TopValue::Array(Element::Record),
            (Orient::Table, _) => TopValue::Skip,
            (Orient::Split, b"\"columns\"") => TopValue::Names,
            (Orient::Split, b"\"index\"") => TopValue::Array(Element::Skip),
            (Orient::Split, b"\"data\"") if self.names.is_empty() => {
                return Err("`data` comes before `columns`, the column names".into())
            }
            (Orient::Split, b"\"data\"") => TopValue::Array(Element::Row),
            (Orient::Split, _) => TopValue::Skip,
        })
    }

    fn start_row(&mut self, out: &mut Vec<u8>) {
        out.push(if self.rows == 0 { b'[' } else { b',' });
        self.rows += 1;
    }

    /// A row object, passed on.
    fn record(&mut self, text: &[u8], at: u64, out: &mut Vec<u8>) -> Result<(), String> {
        if text.first() != Some(&b'{') {
            return Err(format!(
                "expected a row object at byte {at}, but found `{}`",
                String::from_utf8_lossy(&text[..text.len().min(20)])
            ));
        }
        self.start_row(out);
        out.extend_from_slice(text);
        Ok(())
    }

    /// A `split` row: its values, each after its column's name.
    fn row(&mut self, text: &[u8], at: u64, out: &mut Vec<u8>) -> Result<(), String> {
        if text.first() != Some(&b'[') {
            return Err(format!(
                "expected a row (an array of values) at byte {at}, but found `{}`",
                String::from_utf8_lossy(&text[..text.len().min(20)])
            ));
        }
        // Where each value is.
        let mut spans = Vec::with_capacity(self.names.len());
        let mut i = skip_ws(text, 1);
        while text.get(i).is_some_and(|&c| c != b']') {
            let end = value_end(text, i, true)?.ok_or("a row is cut short")?;
            spans.push(i..end);
            i = skip_ws(text, end);
            match text.get(i) {
                Some(b',') => i = skip_ws(text, i + 1),
                Some(b']') => {}
                _ => return Err(format!("row {} (at byte {at}): expected `,` or `]` after a value", self.rows)),
            }
        }
        if spans.len() != self.names.len() {
            return Err(format!(
                "row {} (at byte {at}) has {} values, but `columns` names {}",
                self.rows,
                spans.len(),
                self.names.len()
            ));
        }
        self.start_row(out);
        out.push(b'{');
        for (n, (name, span)) in self.names.iter().zip(spans).enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name);
            out.push(b':');
            out.extend_from_slice(&text[span]);
        }
        out.push(b'}');
        Ok(())
    }

    /// A `columns` entry of the column being read.
    fn cell(&mut self, label: &[u8], value: &[u8]) -> Result<(), String> {
        let first = self.columns.len() == 1;
        let Some(column) = self.columns.last_mut() else {
            return Ok(());
        };
        let i = column.ends.len();
        if first {
            self.labels.extend_from_slice(label);
            self.label_ends.push(self.labels.len());
        } else {
            let start = if i == 0 { 0 } else { self.label_ends.get(i - 1).copied().unwrap_or(0) };
            let same = self.label_ends.get(i).is_some_and(|&end| &self.labels[start..end] == label);
            if !same {
                return Err(format!(
                    "column {} lists row {} as {}, where the first column lists {}: the columns must list the same rows in the same order",
                    String::from_utf8_lossy(&column.name),
                    i,
                    String::from_utf8_lossy(label),
                    match self.label_ends.get(i) {
                        Some(&end) => String::from_utf8_lossy(&self.labels[start..end]).into_owned(),
                        None => "no more rows".into(),
                    }
                ));
            }
        }
        let end = match column.ends.last() {
            Some(&end) if &column.values[column.last_start as usize..end as usize] == value => end,
            _ => {
                let start = column.values.len();
                let end = u32::try_from(start + value.len())
                    .map_err(|_| format!("column {} holds more than 4 GB of text", String::from_utf8_lossy(&column.name)))?;
                column.values.extend_from_slice(value);
                column.last_start = start as u32;
                end
            }
        };
        column.ends.push(end);
        Ok(())
    }

    fn column_done(&mut self) -> Result<(), String> {
        let Some(column) = self.columns.last() else {
            return Ok(());
        };
        if column.ends.len() != self.label_ends.len() {
            return Err(format!(
                "column {} has {} rows, but the first column has {}",
                String::from_utf8_lossy(&column.name),
                column.ends.len(),
                self.label_ends.len()
            ));
        }
        Ok(())
    }

    /// The next rows of a `columns` file, to about [`COLUMNS_OUT_BYTES`] of text.
    fn write_columns(&mut self, out: &mut Vec<u8>) {
        while self.next_row < self.label_ends.len() && out.len() < COLUMNS_OUT_BYTES {
            let row = self.next_row;
            self.next_row += 1;
            self.start_row(out);
            out.push(b'{');
            for (c, column) in self.columns.iter_mut().enumerate() {
                if c > 0 {
                    out.push(b',');
                }
                let end = column.ends[row];
                if end != column.cursor.1 {
                    column.cursor = (column.cursor.1, end);
                }
                let (start, end) = column.cursor;
                out.extend_from_slice(&column.name);
                out.push(b':');
                out.extend_from_slice(&column.values[start as usize..end as usize]);
            }
            out.push(b'}');
        }
    }
}

fn element_of(value: TopValue) -> Element {
    match value {
        TopValue::Array(e) => e,
        _ => Element::Cell,
    }
}

/// The key (a JSON string) starting at `b[at]`: the offset just after it, and just after the
/// `:` that follows; `Ok(None)` if the data ends first, `Err` when something else follows.
fn key_at(b: &[u8], at: usize) -> Result<Option<(usize, usize)>, ()> {
    let Some(end) = string_end(b, at) else {
        return Ok(None);
    };
    let colon = skip_ws(b, end);
    match b.get(colon) {
        None => Ok(None),
        Some(b':') => Ok(Some((end, colon + 1))),
        Some(_) => Err(()),
    }
}

/// The offset just after the JSON string starting at `b[at]` (its opening quote); `None` if
/// the data ends first.
fn string_end(b: &[u8], at: usize) -> Option<usize> {
    let mut from = at + 1;
    loop {
        let j = from + memchr::memchr2(b'"', b'\\', b.get(from..)?)?;
        if b[j] == b'"' {
            return Some(j + 1);
        }
        from = j + 2;
    }
}

/// The offset just after the JSON value starting at `b[at]` (not white space); `None` if the
/// data ends first (`eof`: a number or word running to the end is whole).
fn value_end(b: &[u8], at: usize, eof: bool) -> Result<Option<usize>, String> {
    match b[at] {
        b'"' => Ok(string_end(b, at)),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            while let Some(&c) = b.get(i) {
                match c {
                    b'"' => match string_end(b, i) {
                        Some(end) => {
                            i = end;
                            continue;
                        }
                        None => return Ok(None),
                    },
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(Some(i + 1));
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            Ok(None)
        }
        _ => match b[at..].iter().position(|&c| matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')) {
            Some(0) => Err(format!("expected a value, but found `{}`", b[at] as char)),
            Some(n) => Ok(Some(at + n)),
            None if eof => Ok(Some(b.len())),
            None => Ok(None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records text `reader` makes of `text` fed in pieces of `piece` bytes.
    fn records(orient: Orient, text: &str, piece: usize) -> Result<String, String> {
        let mut reader = OrientReader::new(orient);
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(piece.max(1)) {
            reader.push(chunk, &mut out)?;
        }
        reader.finish(&mut out)?;
        while reader.rest(&mut out) {}
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn each_orient_becomes_the_records_array_in_any_pieces() {
        // Written by hand from pandas' documented layouts (`DataFrame.to_json`), with a
        // string holding the structural characters and an escaped quote.
        let want = r#"[{"layer":0,"token_masked":"a,}]\"{["},{"layer":1,"token_masked":null}]"#;
        let cases = [
            (Orient::Index, r#"{"0":{"layer":0,"token_masked":"a,}]\"{["},"1":{"layer":1,"token_masked":null}}"#),
            (Orient::Table, r#"{"schema":{"fields":[{"name":"index","type":"integer"}],"primaryKey":["index"]},"data":[{"layer":0,"token_masked":"a,}]\"{["},{"layer":1,"token_masked":null}]}"#),
            (Orient::Split, r#"{"columns":["layer","token_masked"],"index":[0,1],"data":[[0,"a,}]\"{["],[1,null]]}"#),
            (Orient::Columns, r#"{"layer":{"0":0,"1":1},"token_masked":{"0":"a,}]\"{[","1":null}}"#),
        ];
        for (orient, text) in cases {
            for piece in [1, 2, 3, 7, 1000] {
                assert_eq!(records(orient, text, piece).as_deref(), Ok(want), "{orient:?} in pieces of {piece}");
            }
            // Pretty-printed (pandas `indent=2`): white space between every token.
            let pretty = serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(text).unwrap()).unwrap();
            let got: serde_json::Value = serde_json::from_str(&records(orient, &pretty, 5).unwrap()).unwrap();
            assert_eq!(got, serde_json::from_str::<serde_json::Value>(want).unwrap(), "{orient:?} pretty");
        }
    }

    #[test]
    fn split_without_an_index_and_an_empty_table() {
        assert_eq!(
            records(Orient::Split, r#"{"columns":["a"],"data":[[1.5],[-2e-3]]}"#, 4).as_deref(),
            Ok(r#"[{"a":1.5},{"a":-2e-3}]"#)
        );
        assert_eq!(records(Orient::Table, r#"{"schema":{},"data":[]}"#, 4).as_deref(), Ok("[]"));
    }

    #[test]
    fn repeated_column_values_are_written_for_every_row() {
        // A value equal to the row before's is stored once (its end repeated).
        let text = r#"{"a":{"0":1,"1":1,"2":2,"3":1},"b":{"0":"x","1":"x","2":"x","3":"y"}}"#;
        let want = r#"[{"a":1,"b":"x"},{"a":1,"b":"x"},{"a":2,"b":"x"},{"a":1,"b":"y"}]"#;
        for piece in [1, 5, 100] {
            assert_eq!(records(Orient::Columns, text, piece).as_deref(), Ok(want), "pieces of {piece}");
        }
    }

    #[test]
    fn broken_files_say_what_is_wrong() {
        let error = |orient, text| records(orient, text, 3).unwrap_err();
        assert!(error(Orient::Index, r#"{"0":{"a":1},"1":{"a":2}"#).contains("cut short"));
        let e = error(Orient::Split, r#"{"columns":["a","b"],"data":[[1,2],[3]]}"#);
        assert!(e.contains("row 1 (at byte 35) has 1 values, but `columns` names 2"), "{e}");
        assert!(error(Orient::Split, r#"{"columns":["a"],"data":[[1,2]]}"#).contains("row 0 (at byte 25) has 2 values, but `columns` names 1"));
        assert!(error(Orient::Split, r#"{"data":[[1]],"columns":["a"]}"#).contains("`data` comes before `columns`"));
        assert!(error(Orient::Columns, r#"{"a":{"0":1,"1":2},"b":{"1":3,"0":4}}"#).contains("column \"b\" lists row 0 as \"1\", where the first column lists \"0\""));
        assert!(error(Orient::Columns, r#"{"a":{"0":1,"1":2},"b":{"0":3}}"#).contains("column \"b\" has 1 rows, but the first column has 2"));
        assert!(error(Orient::Split, r#"{"columns":["a","b"],"data":[[1 2]]}"#).contains("row 0 (at byte 29): expected `,` or `]` after a value"));
        assert!(error(Orient::Index, r#"{"0":[1,2]}"#).contains("expected a row object at byte 5"));
        assert!(error(Orient::Table, r#"{"data":[{"a":1}]} x"#).contains("expected the end of the file"));
    }
}
