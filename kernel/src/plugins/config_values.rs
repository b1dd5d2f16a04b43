//! A component's `config` table as `init` receives it: a flat list of typed values with
//! nested keys dotted.

use super::bindings::ConfigValue;

/// Turns a TOML table into the flat typed list `init` receives (nested keys dotted).
pub fn flatten_config(table: &toml::Table) -> Vec<(String, ConfigValue)> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<(String, ConfigValue)>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::String(s) => out.push((key, ConfigValue::Text(s.clone()))),
                toml::Value::Integer(i) => out.push((key, ConfigValue::Integer(*i))),
                toml::Value::Float(f) => out.push((key, ConfigValue::Float(*f))),
                toml::Value::Boolean(b) => out.push((key, ConfigValue::Boolean(*b))),
                toml::Value::Datetime(d) => out.push((key, ConfigValue::Text(d.to_string()))),
                toml::Value::Array(items) => out.push((
                    key,
                    ConfigValue::Texts(
                        items
                            .iter()
                            .map(|i| match i {
                                toml::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect(),
                    ),
                )),
                toml::Value::Table(t) => walk(&key, t, out),
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_config_is_flattened_with_dotted_keys() {
        let table: toml::Table = toml::from_str(
            "a = 1\nb = \"x\"\nc = [\"p\", \"q\"]\n[workload]\nolap = \"analytics\"\n",
        )
        .unwrap();
        let flat = flatten_config(&table);
        assert!(flat.contains(&("a".into(), ConfigValue::Integer(1))));
        assert!(flat.contains(&(
            "workload.olap".into(),
            ConfigValue::Text("analytics".into())
        )));
        assert!(flat.contains(&("c".into(), ConfigValue::Texts(vec!["p".into(), "q".into()]))));
    }
}
