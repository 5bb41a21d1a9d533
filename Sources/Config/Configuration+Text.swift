/// The effective configuration as `--check-config` prints it: one `WORKFCGI_*`-style line per setting,
/// secrets masked.
extension Settings {
    public var checkConfigLines: [String] {
        Mirror(reflecting: self).children.compactMap { child in
            guard let label = child.label else { return nil }
            let secret = label.lowercased().contains("secret") && !label.hasSuffix("File")
            let value: String
            if secret {
                let present = (child.value as? String?).flatMap { $0 } != nil
                value = present ? "(set, masked)" : "(unset)"
            } else if let optional = child.value as? String? {
                value = optional ?? "(unset)"
            } else {
                value = "\(child.value)"
            }
            return "\(label) = \(value)"
        }
    }
}
