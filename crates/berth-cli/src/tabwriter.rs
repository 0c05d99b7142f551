//! Go's `text/tabwriter` elastic tabstops, as kubectl uses them.
//!
//! kubectl's layouts are defined by tab-separated text run through Go's
//! tabwriter: `get` tables with (minwidth 6, padding 3, remember widths), and
//! `describe` with (minwidth 0, padding 2). Reproducing the algorithm, column
//! blocks included, is the only way to get byte-identical output.

/// One tab-terminated cell; the last cell of a line is not part of a column.
#[derive(Debug)]
struct Cell {
    text: String,
    width: usize,
}

/// A buffer of tab-separated lines, formatted when flushed.
#[derive(Debug)]
pub struct TabWriter {
    min_width: usize,
    padding: usize,
    /// liggitt/tabwriter's `RememberWidths`: a column never shrinks across flushes.
    remember_widths: bool,
    max_widths: Vec<usize>,
    lines: Vec<Vec<Cell>>,
    cell: String,
}

impl TabWriter {
    /// The writer of `kubectl get` tables (cli-runtime's `GetNewTabWriter`).
    pub fn for_table() -> Self {
        Self::new(6, 3, true)
    }

    /// The writer of `kubectl describe` (describe.go `tabbedString`).
    pub fn for_describe() -> Self {
        Self::new(0, 2, false)
    }

    fn new(min_width: usize, padding: usize, remember_widths: bool) -> Self {
        Self {
            min_width,
            padding,
            remember_widths,
            max_widths: Vec::new(),
            lines: vec![Vec::new()],
            cell: String::new(),
        }
    }

    pub fn write_str(&mut self, text: &str) {
        for ch in text.chars() {
            match ch {
                '\t' => self.terminate_cell(),
                '\n' => {
                    self.terminate_cell();
                    self.lines.push(Vec::new());
                }
                _ => self.cell.push(ch),
            }
        }
    }

    fn terminate_cell(&mut self) {
        let text = std::mem::take(&mut self.cell);
        let width = text.chars().count();
        self.lines
            .last_mut()
            .expect("there is always a current line")
            .push(Cell { text, width });
    }

    /// Formats everything written so far; the writer is then empty.
    pub fn flush(&mut self) -> String {
        if !self.cell.is_empty() {
            self.terminate_cell();
        }
        let mut out = String::new();
        let mut widths = Vec::new();
        self.format(&mut out, &mut widths, 0, self.lines.len());
        self.lines = vec![Vec::new()];
        out
    }

    fn format(
        &mut self,
        out: &mut String,
        widths: &mut Vec<usize>,
        mut line0: usize,
        line1: usize,
    ) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            // A column block starts here: lines before it are complete.
            self.write_lines(out, widths, line0, this);
            line0 = this;
            let mut width = self.min_width;
            while this < line1 && column + 1 < self.lines[this].len() {
                width = width.max(self.lines[this][column].width + self.padding);
                this += 1;
            }
            if self.remember_widths {
                match self.max_widths.get_mut(column) {
                    Some(max) if *max > width => width = *max,
                    Some(max) => *max = width,
                    None => {
                        self.max_widths.resize(column, 0);
                        self.max_widths.push(width);
                    }
                }
            }
            widths.push(width);
            self.format(out, widths, line0, this);
            widths.pop();
            line0 = this;
        }
        self.write_lines(out, widths, line0, line1);
    }

    fn write_lines(&self, out: &mut String, widths: &[usize], line0: usize, line1: usize) {
        for i in line0..line1 {
            for (j, cell) in self.lines[i].iter().enumerate() {
                out.push_str(&cell.text);
                if let Some(&width) = widths.get(j) {
                    out.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.width)));
                }
            }
            if i + 1 < self.lines.len() {
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> String {
        let mut w = TabWriter::for_table();
        w.write_str(text);
        w.flush()
    }

    #[test]
    fn pads_columns_by_three_with_min_width_six() {
        let out = table("NAME\tREADY\tSTATUS\tRESTARTS\tAGE\nweb\t1/1\tRunning\t0\t5s\n");
        assert_eq!(
            out,
            "NAME   READY   STATUS    RESTARTS   AGE\n\
             web    1/1     Running   0          5s\n"
        );
    }

    #[test]
    fn remembered_widths_never_shrink_across_flushes() {
        let mut w = TabWriter::for_table();
        w.write_str("NAME\tAGE\nlong-pod-name\t1s\n");
        let first = w.flush();
        w.write_str("a\t2s\n");
        assert_eq!(first, "NAME            AGE\nlong-pod-name   1s\n");
        assert_eq!(w.flush(), "a               2s\n");
    }

    #[test]
    fn a_line_without_tabs_ends_a_column_block() {
        let mut w = TabWriter::for_describe();
        w.write_str("Name:\tweb\nNamespace:\tdefault\nIPs:\n  IP:\t10.0.0.1\n");
        assert_eq!(
            w.flush(),
            "Name:       web\nNamespace:  default\nIPs:\n  IP:  10.0.0.1\n"
        );
    }

    #[test]
    fn nested_columns_are_aligned_within_their_block() {
        let mut w = TabWriter::for_describe();
        w.write_str("  Type\tStatus\n  Ready \tTrue \n  PodScheduled \tTrue \n");
        assert_eq!(
            w.flush(),
            "  Type           Status\n  Ready          True \n  PodScheduled   True \n"
        );
    }
}
