//! Output formatting as the Azure CLI does it (knack's formatters): `--query` (JMESPath) is
//! applied first, then the result is printed as `json` (2-space indent, keys sorted), `jsonc`
//! (the same, coloured on a terminal), `table`, `tsv` or `none`. A command whose result is
//! `null` prints nothing in every format.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use clap::ValueEnum;
use comfy_table::{ContentLineStyle, LineStyle, Table, TableStyle};
use jmespath::ast::Ast;
use serde_json::{Map, Value};

/// `-o/--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// JSON, 2-space indent, keys sorted (the default).
    #[default]
    Json,
    /// Coloured JSON (plain JSON when stdout is not a terminal).
    Jsonc,
    /// A table of each object's scalar fields, keys as column headings.
    Table,
    /// Tab-separated values without keys, one line per object.
    Tsv,
    /// No output other than errors and warnings.
    None,
}

/// A compiled `--query` expression.
#[derive(Debug)]
pub struct Query {
    expr: jmespath::Expression<'static>,
    /// The key order of a multiselect hash (`{name:displayName, id:id}`) that shapes the result,
    /// so that tsv and table keep the order the query wrote (the Azure CLI keeps it too).
    key_order: Option<Vec<String>>,
}

impl Query {
    /// Compiles a JMESPath expression.
    pub fn compile(text: &str) -> Result<Self, String> {
        let expr = jmespath::compile(text).map_err(|e| e.to_string())?;
        let key_order = hash_keys(expr.as_ast());
        Ok(Query { expr, key_order })
    }

    /// Runs the query over `value`.
    pub fn apply(&self, value: &Value) -> Result<Value> {
        let result = self
            .expr
            .search(value)
            .map_err(|e| anyhow::anyhow!("invalid --query: {e}"))?;
        serde_json::to_value(&*result).context("cannot convert the --query result")
    }
}

/// The keys of the multiselect hash that produces the elements of a query's result, if any.
fn hash_keys(ast: &Ast) -> Option<Vec<String>> {
    match ast {
        Ast::MultiHash { elements, .. } => Some(elements.iter().map(|kv| kv.key.clone()).collect()),
        Ast::Projection { rhs, .. } | Ast::Subexpr { rhs, .. } => hash_keys(rhs),
        // a filter projection, `[?cond].{...}`, wraps its right-hand side in a condition
        Ast::Condition { then, .. } => hash_keys(then),
        _ => None,
    }
}

/// How to render: the format, the optional query, and whether colour is allowed.
#[derive(Debug)]
pub struct Printer {
    /// The output format.
    pub format: OutputFormat,
    /// The compiled `--query`.
    pub query: Option<Query>,
    /// Whether stdout is a terminal (for `jsonc` colour).
    pub color: bool,
}

impl Printer {
    /// Renders `value` to the text that goes to stdout (empty when nothing is printed).
    pub fn render(&self, value: &Value) -> Result<String> {
        let (value, order) = match &self.query {
            Some(q) => (q.apply(value)?, Some(q.key_order.clone().unwrap_or_default())),
            None => (value.clone(), None),
        };
        if value.is_null() {
            return Ok(String::new());
        }
        Ok(match self.format {
            OutputFormat::Json => to_json(&value, false),
            OutputFormat::Jsonc => to_json(&value, self.color),
            OutputFormat::Tsv => to_tsv(&value, order.as_deref()),
            OutputFormat::Table => to_table(&value, order.as_deref()),
            OutputFormat::None => String::new(),
        })
    }

    /// Renders and prints `value` to stdout.
    pub fn print(&self, value: &Value) -> Result<()> {
        use std::io::Write as _;
        let text = self.render(value)?;
        if !text.is_empty() {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => {}
                // A closed pipe (`usher ... | head`) is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e).context("cannot write to stdout"),
            }
        }
        Ok(())
    }
}

const KEY: &str = "\x1b[94m";
const STRING: &str = "\x1b[32m";
const LITERAL: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// JSON with sorted keys and 2-space indent, ending in a newline; coloured when `color`.
pub fn to_json(value: &Value, color: bool) -> String {
    let mut out = String::new();
    write_json(&mut out, value, 0, color);
    out.push('\n');
    out
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn paint(out: &mut String, color: bool, code: &str, text: &str) {
    if color {
        out.push_str(code);
        out.push_str(text);
        out.push_str(RESET);
    } else {
        out.push_str(text);
    }
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn write_json(out: &mut String, value: &Value, level: usize, color: bool) {
    match value {
        Value::Null => paint(out, color, LITERAL, "null"),
        Value::Bool(b) => paint(out, color, LITERAL, if *b { "true" } else { "false" }),
        Value::Number(n) => paint(out, color, LITERAL, &n.to_string()),
        Value::String(s) => paint(out, color, STRING, &quoted(s)),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                indent(out, level + 1);
                write_json(out, item, level + 1, color);
                if i + 1 < items.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(out, level);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            out.push_str("{\n");
            let entries = sorted_entries(map);
            for (i, (k, v)) in entries.iter().enumerate() {
                indent(out, level + 1);
                paint(out, color, KEY, &quoted(k));
                out.push_str(": ");
                write_json(out, v, level + 1, color);
                if i + 1 < entries.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            indent(out, level);
            out.push('}');
        }
    }
}

/// The keys of `map` in output order: those named by the query's multiselect hash first (in
/// its order), the rest sorted. Without a query every key is sorted.
fn ordered_keys<'a>(map: &'a Map<String, Value>, order: Option<&[String]>) -> Vec<&'a String> {
    let mut keys: Vec<&String> = Vec::new();
    if let Some(order) = order {
        for k in order {
            if let Some((key, _)) = map.get_key_value(k) {
                keys.push(key);
            }
        }
    }
    let mut rest: Vec<&String> = map.keys().filter(|k| !keys.contains(k)).collect();
    rest.sort();
    keys.extend(rest);
    keys
}

/// One tsv cell, as Python's `str()` prints it in knack: a nested list gives its length, a
/// nested object an empty cell, null `None`, booleans `True`/`False`.
fn tsv_cell(value: &Value) -> String {
    match value {
        Value::Array(items) => items.len().to_string(),
        Value::Object(_) => String::new(),
        Value::Null => "None".to_string(),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
    }
}

fn tsv_row(out: &mut String, value: &Value, order: Option<&[String]>) {
    match value {
        Value::Object(map) => {
            let cells: Vec<String> = ordered_keys(map, order)
                .into_iter()
                .filter_map(|k| map.get(k))
                .map(tsv_cell)
                .collect();
            out.push_str(&cells.join("\t"));
        }
        Value::Array(items) => {
            let cells: Vec<String> = items.iter().map(tsv_cell).collect();
            out.push_str(&cells.join("\t"));
        }
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        other => out.push_str(&tsv_cell(other)),
    }
    out.push('\n');
}

/// Tab-separated values: one line per element of an array (or one line for anything else);
/// an object's values in key order, without keys; strings unquoted.
pub fn to_tsv(value: &Value, order: Option<&[String]>) -> String {
    let mut out = String::new();
    match value {
        Value::Array(items) => {
            for item in items {
                tsv_row(&mut out, item, order);
            }
        }
        other => tsv_row(&mut out, other, order),
    }
    out
}

/// Keys the Azure CLI leaves out of automatic tables.
const TABLE_SKIP_KEYS: [&str; 3] = ["id", "type", "etag"];

fn capitalize_first(key: &str) -> String {
    let mut chars = key.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn table_cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// One table row as (heading, cell) pairs.
fn table_row(value: &Value, order: Option<&[String]>) -> Vec<(String, String)> {
    match value {
        Value::Object(map) => ordered_keys(map, order)
            .into_iter()
            .filter(|k| !TABLE_SKIP_KEYS.contains(&k.as_str()))
            .filter_map(|k| map.get(k).map(|v| (k, v)))
            .filter(|(_, v)| !(v.is_null() || v.is_array() || v.is_object()))
            .map(|(k, v)| (capitalize_first(k), table_cell(v)))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("Column{}", i + 1), table_cell(v)))
            .collect(),
        other => vec![("Result".to_string(), table_cell(other))],
    }
}

/// The style of Python tabulate's `simple` format that the Azure CLI uses.
const SIMPLE: TableStyle = TableStyle::new()
    .header_lines(ContentLineStyle::none().junction(' '))
    .header_separator(LineStyle::none().fill('-').junction(' '))
    .content_lines(ContentLineStyle::none().junction(' '));

/// A table of the scalar fields of each object (keys as headings, first letter capitalised;
/// `id`, `type` and `etag` left out as the Azure CLI does).
pub fn to_table(value: &Value, order: Option<&[String]>) -> String {
    let rows: Vec<Vec<(String, String)>> = match value {
        Value::Array(items) => items.iter().map(|v| table_row(v, order)).collect(),
        other => vec![table_row(other, order)],
    };
    let mut headings: Vec<String> = Vec::new();
    for row in &rows {
        for (h, _) in row {
            if !headings.contains(h) {
                headings.push(h.clone());
            }
        }
    }
    if headings.is_empty() {
        return String::new();
    }
    let mut table = Table::new();
    table.load_style(SIMPLE);
    table.force_no_tty();
    table.set_header(headings.clone());
    for row in &rows {
        let cells: Vec<String> = headings
            .iter()
            .map(|h| {
                row.iter()
                    .find(|(k, _)| k == h)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect();
        table.add_row(cells);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 1));
    }
    let mut out = String::new();
    for line in table.lines() {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn account() -> Value {
        json!({
            "environmentName": "usher",
            "homeTenantId": "11111111-1111-1111-1111-111111111111",
            "id": "22222222-2222-2222-2222-222222222222",
            "isDefault": true,
            "managedByTenants": [],
            "name": "Default",
            "state": "Enabled",
            "tenantId": "11111111-1111-1111-1111-111111111111",
            "user": {"name": "admin@contoso.test", "type": "user"}
        })
    }

    fn printer(format: OutputFormat, query: Option<&str>) -> Result<Printer> {
        let query = match query {
            Some(q) => Some(Query::compile(q).map_err(anyhow::Error::msg)?),
            None => None,
        };
        Ok(Printer {
            format,
            query,
            color: false,
        })
    }

    #[test]
    fn query_user_name_tsv_prints_the_bare_name() -> Result<()> {
        let p = printer(OutputFormat::Tsv, Some("user.name"))?;
        assert_eq!(p.render(&account())?, "admin@contoso.test\n");
        Ok(())
    }

    #[test]
    fn query_scalar_json_is_quoted() -> Result<()> {
        let p = printer(OutputFormat::Json, Some("user.name"))?;
        assert_eq!(p.render(&account())?, "\"admin@contoso.test\"\n");
        Ok(())
    }

    #[test]
    fn json_is_sorted_with_two_space_indent() -> Result<()> {
        let p = printer(OutputFormat::Json, None)?;
        let text = p.render(&json!({"b": 1, "a": {"y": [1, "x"], "x": null}, "c": []}))?;
        assert_eq!(
            text,
            "{\n  \"a\": {\n    \"x\": null,\n    \"y\": [\n      1,\n      \"x\"\n    ]\n  },\n  \"b\": 1,\n  \"c\": []\n}\n"
        );
        Ok(())
    }

    #[test]
    fn jsonc_without_color_equals_json() -> Result<()> {
        let a = printer(OutputFormat::Jsonc, None)?.render(&account())?;
        let b = printer(OutputFormat::Json, None)?.render(&account())?;
        assert_eq!(a, b);
        assert!(!a.contains('\x1b'));
        let coloured = to_json(&account(), true);
        assert!(coloured.contains("\x1b[94m\"environmentName\"\x1b[0m"));
        Ok(())
    }

    #[test]
    fn tsv_object_is_one_line_in_key_order() -> Result<()> {
        let p = printer(OutputFormat::Tsv, None)?;
        assert_eq!(
            p.render(&account())?,
            "usher\t11111111-1111-1111-1111-111111111111\t22222222-2222-2222-2222-222222222222\tTrue\t0\tDefault\tEnabled\t11111111-1111-1111-1111-111111111111\t\n"
        );
        Ok(())
    }

    #[test]
    fn tsv_array_is_one_line_per_element() -> Result<()> {
        let p = printer(OutputFormat::Tsv, None)?;
        let v = json!([{"id": "1", "displayName": "A"}, {"id": "2", "displayName": "B"}]);
        assert_eq!(p.render(&v)?, "A\t1\nB\t2\n");
        let ids = printer(OutputFormat::Tsv, Some("[].id"))?;
        assert_eq!(ids.render(&v)?, "1\n2\n");
        Ok(())
    }

    #[test]
    fn tsv_keeps_the_order_of_a_multiselect_hash() -> Result<()> {
        let v = json!([{"id": "1", "displayName": "A"}]);
        let p = printer(OutputFormat::Tsv, Some("[].{name:displayName, id:id}"))?;
        assert_eq!(p.render(&v)?, "A\t1\n");
        let p = printer(OutputFormat::Tsv, Some("[0].{z:id, a:displayName}"))?;
        assert_eq!(p.render(&v)?, "1\tA\n");
        // a filter projection keeps it too
        let p = printer(OutputFormat::Tsv, Some("[?id=='1'].{z:id, a:displayName}"))?;
        assert_eq!(p.render(&v)?, "1\tA\n");
        let p = printer(OutputFormat::Table, Some("[?id=='1'].{z:displayName, a:id}"))?;
        assert_eq!(
            p.render(&v)?
                .lines()
                .next()
                .map(str::split_whitespace)
                .map(Iterator::collect::<Vec<_>>),
            Some(vec!["Z", "A"])
        );
        Ok(())
    }

    #[test]
    fn tsv_scalars_and_null() -> Result<()> {
        let p = printer(OutputFormat::Tsv, None)?;
        assert_eq!(p.render(&json!(true))?, "true\n");
        assert_eq!(p.render(&json!(3))?, "3\n");
        assert_eq!(p.render(&json!({"a": null, "b": false}))?, "None\tFalse\n");
        assert_eq!(p.render(&Value::Null)?, "");
        let missing = printer(OutputFormat::Tsv, Some("nothing.here"))?;
        assert_eq!(missing.render(&account())?, "");
        Ok(())
    }

    #[test]
    fn table_shows_scalar_fields_without_id() -> Result<()> {
        let p = printer(OutputFormat::Table, None)?;
        let v = json!([
            {"id": "1", "displayName": "Alice", "accountEnabled": true, "userPrincipalName": "alice@contoso.test", "groups": []},
            {"id": "2", "displayName": "Bob", "accountEnabled": false, "userPrincipalName": "bob@contoso.test", "groups": []}
        ]);
        let text = p.render(&v)?;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("AccountEnabled"));
        assert!(lines[0].contains("DisplayName"));
        assert!(lines[0].contains("UserPrincipalName"));
        assert!(!lines[0].contains("Id"));
        assert!(!lines[0].contains("Groups"));
        assert!(lines[1].starts_with("---"));
        assert!(lines[2].starts_with("True"));
        assert!(lines[2].contains("alice@contoso.test"));
        assert!(lines[3].contains("Bob"));
        Ok(())
    }

    #[test]
    fn table_of_scalars_and_queries() -> Result<()> {
        let p = printer(OutputFormat::Table, Some("user.name"))?;
        let text = p.render(&account())?;
        assert_eq!(text.lines().next(), Some("Result"));
        assert!(text.contains("admin@contoso.test"));
        let p = printer(OutputFormat::Table, Some("{Z:name, A:state}"))?;
        let text = p.render(&account())?;
        let header = text.lines().next().unwrap_or_default();
        assert!(header.starts_with('Z'), "{header}");
        let empty = printer(OutputFormat::Table, None)?;
        assert_eq!(empty.render(&json!([]))?, "");
        Ok(())
    }

    #[test]
    fn none_prints_nothing() -> Result<()> {
        let p = printer(OutputFormat::None, None)?;
        assert_eq!(p.render(&account())?, "");
        Ok(())
    }

    #[test]
    fn bad_query_does_not_compile() {
        assert!(Query::compile("user.[").is_err());
    }

    #[test]
    fn list_filter_query() -> Result<()> {
        let v = json!([{"displayName": "A", "n": 1}, {"displayName": "B", "n": 2}]);
        let p = printer(OutputFormat::Json, Some("[?n > `1`].displayName"))?;
        assert_eq!(p.render(&v)?, "[\n  \"B\"\n]\n");
        Ok(())
    }
}
