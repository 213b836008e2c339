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
                let first = match self.label_ends.get(i) {
                    Some(&end) => String::from_utf8_lossy(&self.labels[start..end]).into_owned(),
                    None => "no more rows".into(),
                };
                return Err(other_row_label(&column.name, i, label, &first));
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

/// A whole `columns` file in memory (the CLI maps its input), its rows written out as records
/// text in place: one cursor per column, all advancing a row at a time, so nothing is held
/// (fed chunk by chunk, [`OrientReader`] holds the values until the object ends: about a
/// third of the file).
///
/// Each column's object is found first, by its end: a `}` followed by `,"name":{` (the next
/// column) or by the `}` that closes the file. With scalar cells, that text cannot stand inside
/// a string (a quote there is escaped); a file whose first cells are objects or arrays is not
/// read this way. Reading the rows then checks the rest: every column lists the same row
/// labels, in the same order, and ends where it was found to end.
pub struct ColumnsInPlace<'a> {
    data: &'a [u8],
    columns: Vec<ColumnCursor>,
    /// Rows written so far.
    rows: u64,
    done: bool,
}

/// One column of a [`ColumnsInPlace`].
struct ColumnCursor {
    /// Its name, as JSON text (quotes included).
    name: std::ops::Range<usize>,
    /// Where its next entry (or its closing `}`) is, past white space and `,`.
    at: usize,
    /// Its closing `}`.
    end: usize,
    /// Where the bytes not yet said to be read start ([`ColumnsInPlace::read`]).
    told: usize,
}

impl<'a> ColumnsInPlace<'a> {
    /// The columns of the `columns` file `data`; `None` when they are not found as described
    /// above (the file is then read by [`OrientReader`], which tells what is wrong with it).
    /// `scanned` is told the bytes looked through, as the search goes.
    pub fn new(data: &'a [u8], scanned: &mut dyn FnMut(std::ops::Range<usize>)) -> Option<ColumnsInPlace<'a>> {
        let data_end = data.iter().rposition(|c| !c.is_ascii_whitespace())?;
        if data[data_end] != b'}' {
            return None;
        }
        let bom = if data.starts_with(b"\xef\xbb\xbf") { 3 } else { 0 };
        let mut at = skip_ws(data, bom);
        if data.get(at) != Some(&b'{') {
            return None;
        }
        at = skip_ws(data, at + 1);
        let mut columns = Vec::new();
        let mut told = 0;
        // `at`: the key of the next column.
        loop {
            let (name_end, open) = column_at(data, at)?;
            let first = skip_ws(data, open + 1);
            // The first cell's value: objects and arrays are not read in place.
            if data.get(first) == Some(&b'"') {
                let (_, value_at) = key_at(data, first).ok()??;
                if matches!(data.get(skip_ws(data, value_at)), Some(b'{' | b'[')) {
                    return None;
                }
            }
            // The column's end, and the next column's key (or the file's end).
            let mut from = first;
            let (end, next) = loop {
                // Looked for a window at a time, so that the bytes looked through are told
                // as the search goes (a column of prompt texts may be half the file).
                let window = (from + SCANNED_TELL_BYTES).min(data_end);
                let Some(i) = memchr::memchr(b'}', data.get(from..window)?) else {
                    if window == data_end {
                        return None;
                    }
                    if window - told >= SCANNED_TELL_BYTES {
                        scanned(told..window);
                        told = window;
                    }
                    from = window;
                    continue;
                };
                let close = from + i;
                let after = skip_ws(data, close + 1);
                if after == data_end {
                    break (close, None);
                }
                if data.get(after) == Some(&b',') {
                    let key = skip_ws(data, after + 1);
                    if column_at(data, key).is_some() {
                        break (close, Some(key));
                    }
                }
                from = close + 1;
            };
            columns.push(ColumnCursor { name: at..name_end, at: first, end, told: at });
            if end - told >= SCANNED_TELL_BYTES {
                scanned(told..end);
                told = end;
            }
            match next {
                Some(key) => at = key,
                None => break,
            }
        }
        scanned(told..data.len());
        Some(ColumnsInPlace { data, columns, rows: 0, done: false })
    }

    /// The next rows, as records text (`[` first, `]` last), to about `bytes` more bytes of
    /// `out`; `Ok(false)` once all is given.
    pub fn next(&mut self, out: &mut Vec<u8>, bytes: usize) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let data = self.data;
        let target = out.len() + bytes;
        while out.len() < target {
            if self.columns[0].at == self.columns[0].end {
                // The first column is done: so must the others be.
                if let Some(c) = self.columns.iter().find(|c| c.at != c.end) {
                    return Err(format!(
                        "column {} has more rows than the first column, which has {}",
                        String::from_utf8_lossy(&data[c.name.clone()]),
                        self.rows
                    ));
                }
                out.extend_from_slice(if self.rows == 0 { b"[]" } else { b"]" });
                self.done = true;
                return Ok(true);
            }
            out.push(if self.rows == 0 { b'[' } else { b',' });
            out.push(b'{');
            let mut label = 0..0;
            let rows = self.rows;
            for (k, c) in self.columns.iter_mut().enumerate() {
                let (name, end) = (c.name.clone(), c.end);
                let name = || String::from_utf8_lossy(&data[name.clone()]);
                if c.at == end {
                    return Err(format!("column {} has {rows} rows, but the first column has more", name()));
                }
                let at = c.at;
                let unexpected = |what: &str, at: usize| {
                    format!(
                        "column {}: expected {what} at byte {at}, but found `{}`",
                        name(),
                        String::from_utf8_lossy(&data[at..(at + 20).min(end + 1)])
                    )
                };
                if data[at] != b'"' {
                    return Err(unexpected("a row label", at));
                }
                let (label_end, value_at) = match key_at(&data[..end], at) {
                    Ok(Some(k)) => k,
                    _ => return Err(unexpected("a row label and `:`", at)),
                };
                if k == 0 {
                    label = at..label_end;
                } else if data[at..label_end] != data[label.clone()] {
                    let first = String::from_utf8_lossy(&data[label.clone()]);
                    return Err(other_row_label(&data[c.name.clone()], rows, &data[at..label_end], &first));
                }
                let value_at = skip_ws(data, value_at);
                if value_at >= end {
                    return Err(unexpected("a value", value_at));
                }
                let Some(value_end) = value_end(&data[..end], value_at, true)? else {
                    return Err(unexpected("a whole value", value_at));
                };
                if k > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&data[c.name.clone()]);
                out.push(b':');
                out.extend_from_slice(&data[value_at..value_end]);
                let after = skip_ws(data, value_end);
                let next = match data[after] {
                    b',' => match skip_ws(data, after + 1) {
                        n if n >= end => return Err(unexpected("a row label", n)),
                        n => n,
                    },
                    b'}' if after == end => after,
                    _ => return Err(unexpected("`,` or the column's end", after)),
                };
                c.at = next;
            }
            out.push(b'}');
            self.rows += 1;
        }
        Ok(true)
    }

    /// The bytes read since the last call, per column, where there are `at_least` of them
    /// (for the caller to drop them from memory).
    pub fn read(&mut self, at_least: usize, f: &mut dyn FnMut(std::ops::Range<usize>)) {
        for c in &mut self.columns {
            if c.at - c.told >= at_least {
                f(c.told..c.at);
                c.told = c.at;
            }
        }
    }
}

/// A column of a `columns` file at `data[at]`: a key, `:` and `{`; the key's end and the
/// offset of the `{`.
fn column_at(data: &[u8], at: usize) -> Option<(usize, usize)> {
    if data.get(at) != Some(&b'"') {
        return None;
    }
    let (name_end, value_at) = key_at(data, at).ok()??;
    let open = skip_ws(data, value_at);
    (data.get(open) == Some(&b'{')).then_some((name_end, open))
}

/// The message for a `columns` file whose column `column` (its name's JSON text) lists row
/// `row` as `label`, where the first column lists `first`.
fn other_row_label(column: &[u8], row: impl std::fmt::Display, label: &[u8], first: &str) -> String {
    format!(
        "column {} lists row {row} as {}, where the first column lists {first}: the columns must list the same rows in the same order",
        String::from_utf8_lossy(column),
        String::from_utf8_lossy(label),
    )
}

/// How many bytes [`ColumnsInPlace::new`] looks through between reports.
const SCANNED_TELL_BYTES: usize = 8 << 20;

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

    /// The records text [`ColumnsInPlace`] makes of `text`, asked for `piece` bytes at a time;
    /// `None` when it does not read the file in place.
    fn in_place(text: &str, piece: usize) -> Option<Result<String, String>> {
        let mut told = Vec::new();
        let mut rows = ColumnsInPlace::new(text.as_bytes(), &mut |r| told.push(r))?;
        // The search looks through the whole file, front to back, without gaps.
        assert_eq!(told.first().map(|r| r.start), Some(0));
        assert!(told.windows(2).all(|w| w[0].end == w[1].start), "{told:?}");
        assert_eq!(told.last().map(|r| r.end), Some(text.len()));
        let mut out = Vec::new();
        loop {
            match rows.next(&mut out, piece) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(String::from_utf8(out).unwrap()))
    }

    #[test]
    fn a_whole_columns_file_is_read_in_place() {
        // Written by hand from pandas' layout; text holding `}`, `,` and `"` (escaped), and
        // `},"x":{`, the text a column's end is found by, inside a string.
        let text = r#"{"layer":{"0":0,"1":1,"2":1},"token_masked":{"0":"a,}]\"{[","1":"},\"x\":{","2":null},"l2":{"0":1.5,"1":-2e-3,"2":0.0}}"#;
        let want = r#"[{"layer":0,"token_masked":"a,}]\"{[","l2":1.5},{"layer":1,"token_masked":"},\"x\":{","l2":-2e-3},{"layer":1,"token_masked":null,"l2":0.0}]"#;
        for piece in [1, 10, 1000] {
            assert_eq!(in_place(text, piece), Some(Ok(want.to_string())), "asked {piece} bytes at a time");
        }
        // Pretty-printed (pandas `indent=4`), with a byte order mark: the same rows.
        let pretty = serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(text).unwrap()).unwrap();
        let got = in_place(&format!("\u{feff}{pretty}\n"), 7).unwrap().unwrap();
        let got: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(got, serde_json::from_str::<serde_json::Value>(want).unwrap());
        // No rows.
        assert_eq!(in_place(r#"{"a":{},"b":{}}"#, 10), Some(Ok("[]".to_string())));
    }

    #[test]
    fn files_not_laid_out_as_columns_are_left_to_the_reader() {
        // Object cells (a nested value could hold the text a column's end is found by).
        assert_eq!(in_place(r#"{"a":{"0":{"x":1},"1":{"x":2}}}"#, 10), None);
        assert_eq!(in_place(r#"{"a":{"0":[1]}}"#, 10), None);
        // Not closed; not an object; a column that is not an object.
        assert_eq!(in_place(r#"{"a":{"0":1}"#, 10), None);
        assert_eq!(in_place(r#"[{"a":1}]"#, 10), None);
        assert_eq!(in_place(r#"{"a":[1,2]}"#, 10), None);
    }

    #[test]
    fn broken_columns_in_place_say_what_is_wrong() {
        let error = |text| in_place(text, 1000).expect("read in place").unwrap_err();
        let e = error(r#"{"a":{"0":1,"1":2},"b":{"1":3,"0":4}}"#);
        assert!(e.contains("column \"b\" lists row 0 as \"1\", where the first column lists \"0\""), "{e}");
        let e = error(r#"{"a":{"0":1,"1":2},"b":{"0":3}}"#);
        assert!(e.contains("column \"b\" has 1 rows, but the first column has more"), "{e}");
        let e = error(r#"{"a":{"0":1},"b":{"0":3,"1":4}}"#);
        assert!(e.contains("column \"b\" has more rows than the first column, which has 1"), "{e}");
        let e = error(r#"{"a":{"0":1 2},"b":{"0":3}}"#);
        assert!(e.contains("column \"a\": expected `,` or the column's end at byte 12"), "{e}");
        let e = error(r#"{"a":{"0":1,},"b":{"0":3}}"#);
        assert!(e.contains("column \"a\": expected a row label at byte 12"), "{e}");
    }
}
