//! The words of reports and of the console, in Vietnamese (the default)
//! and English.

use serde::Serialize;
use time::UtcOffset;

use crate::incident::State;

/// Vietnam's zone: reports and the console show times in it.
pub const VIETNAM: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Vi,
    En,
}

impl Lang {
    /// `vi` or `en`; "" is the default (Vietnamese).
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "" | "vi" => Some(Lang::Vi),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }
}

/// Looks words up in one language.
#[derive(Debug, Clone, Copy)]
pub struct Text(pub Lang);

/// (key, Vietnamese, English)
const WORDS: &[(&str, &str, &str)] = &[
    ("field", "Mục", "Field"),
    ("nav_registry", "Đơn vị và hệ thống", "Agencies and systems"),
    ("edit", "sửa", "edit"),
    ("save", "Lưu", "Save"),
    ("import", "Nhập danh mục", "Import"),
    (
        "import_help",
        "Bảng CSV (dòng đầu là tên cột) hoặc JSON (mảng đối tượng), cùng các cột và cùng kiểm tra như lệnh `canhgac agency import` / `system import`; tất cả hoặc không dòng nào được nhập.",
        "A CSV sheet (first row: column names) or JSON (an array of objects), the same columns and checks as `canhgac agency import` / `system import`; all rows or none are imported.",
    ),
    ("dry_run", "Chỉ kiểm tra", "Check only"),
    ("dry_run_ok", "Kiểm tra đạt, chưa ghi gì.", "Checked, nothing written."),
    ("content", "Nội dung", "Content"),
    ("created", "Tạo mới", "Created"),
    ("updated_n", "Cập nhật", "Updated"),
    ("contacts", "Đầu mối", "Contact points"),
    ("next_assessment", "Hạn đánh giá tiếp theo", "Next assessment due"),
    ("state_secrets", "xử lý bí mật nhà nước", "processes state secrets"),
    ("merge", "Gộp", "Merge"),
    ("merge_into_this", "Gộp vào sự cố này các sự cố số", "Merge into this incident the incidents"),
    ("revoke", "Thu hồi", "Revoke"),
    ("counters", "Bộ đếm", "Counters"),
    ("generate", "Lập báo cáo", "Generate a report"),
    ("schedule", "Lịch lập báo cáo tự động", "Report schedule"),
    (
        "no_schedule",
        "Chưa cấu hình lịch ([[reports.schedule]] trong tệp cấu hình).",
        "No schedule configured ([[reports.schedule]] in the configuration).",
    ),
    ("kept_reports", "Báo cáo đã lập theo lịch", "Scheduled reports kept"),
    ("all_agencies", "Tất cả đơn vị", "All agencies"),
    ("value", "Nội dung", "Value"),
    ("evidence", "Bằng chứng", "Evidence"),
    ("incident", "Sự cố", "Incident"),
    ("daily_title", "Báo cáo tình hình giám sát hằng ngày", "Daily monitoring report"),
    (
        "weekly_title",
        "Báo cáo giám sát an toàn thông tin hằng tuần",
        "Weekly information security monitoring report",
    ),
    (
        "six_month_title",
        "Báo cáo sáu tháng về công tác giám sát an toàn thông tin",
        "Six-month information security monitoring report",
    ),
    (
        "annual_title",
        "Báo cáo tổng hợp tuân thủ cấp độ an toàn hệ thống thông tin hằng năm",
        "Annual security-level compliance summary",
    ),
    ("incidents_by_category", "Sự cố theo loại và cấp độ hệ thống", "Incidents by category and system level"),
    ("serious", "Nghiêm trọng", "Serious"),
    ("dismissed", "Đã loại bỏ", "Dismissed"),
    (
        "systems_by_level",
        "Hệ thống thông tin theo cấp độ, hồ sơ và đánh giá",
        "Information systems by level, dossier and assessment",
    ),
    ("compliance_summary", "Tổng hợp theo cấp độ", "Summary by level"),
    ("decision", "Quyết định phê duyệt", "Approval decision"),
    ("last_assessment", "Đánh giá gần nhất", "Last assessment"),
    ("approved", "Hồ sơ đã phê duyệt", "Dossiers approved"),
    ("assessed", "Đã đánh giá trong kỳ", "Assessed in the period"),
    (
        "layers_title",
        "Bốn lớp giám sát (Công văn 1552/2020)",
        "The four supervision layers (letter 1552/2020)",
    ),
    ("layer", "Lớp", "Layer"),
    ("in_place", "Đã có", "In place"),
    ("detail", "Chi tiết", "Detail"),
    ("layer_on_site", "Lực lượng tại chỗ", "On-site team"),
    ("layer_provider", "Doanh nghiệp giám sát chuyên nghiệp", "Professional supervision provider"),
    ("layer_inspection", "Kiểm tra, đánh giá độc lập", "Independent inspection"),
    ("layer_upstream", "Kết nối hệ thống giám sát quốc gia", "Connection to the national supervision system"),
    ("period", "Thời gian giám sát", "Monitoring period"),
    ("generated", "Thời điểm lập", "Generated"),
    ("unit", "Đơn vị", "Unit"),
    (
        "truncated",
        "Số cảnh báo vượt giới hạn đọc; các bảng chỉ tính phần đã đọc",
        "Alert count exceeded the read limit; tables count only those read",
    ),
    ("systems_monitored", "Hệ thống thông tin được giám sát", "Monitored information systems"),
    ("alerts_by_severity", "Cảnh báo theo mức độ", "Alerts by severity"),
    ("alerts_by_detector", "Cảnh báo theo bộ phát hiện", "Alerts by detector"),
    (
        "attacked_targets",
        "Đối tượng bị tấn công (địa chỉ IP, dịch vụ, thời gian)",
        "Attacked targets (IP address, service, time)",
    ),
    ("techniques_evidence", "Kỹ thuật tấn công và bằng chứng", "Attack techniques and evidence"),
    ("attack_sources", "Nguồn tấn công", "Attack sources"),
    ("incidents", "Sự cố trong kỳ", "Incidents in the period"),
    ("system_changes", "Thay đổi của hệ thống được giám sát", "Changes to the monitored systems"),
    ("monitoring_changes", "Thay đổi của hệ thống giám sát", "Changes to the monitoring system"),
    ("system", "Hệ thống", "System"),
    ("level", "cấp độ", "level"),
    ("level_col", "Cấp độ", "Level"),
    ("dossier", "Hồ sơ cấp độ", "Level dossier"),
    ("agents", "Tác tử", "Agents"),
    ("severity", "Mức độ", "Severity"),
    ("count", "Số lượng", "Count"),
    ("detector", "Bộ phát hiện", "Detector"),
    ("address", "Địa chỉ", "Address"),
    ("services", "Dịch vụ (cổng)", "Services (ports)"),
    ("alerts", "Số cảnh báo", "Alerts"),
    ("first_seen", "Lần đầu", "First seen"),
    ("last_seen", "Lần cuối", "Last seen"),
    ("signature_id", "Mã dấu hiệu", "Signature id"),
    ("signature", "Dấu hiệu", "Signature"),
    ("technique", "Kỹ thuật (ATT&CK)", "Technique (ATT&CK)"),
    ("category", "Loại", "Category"),
    ("source", "Nguồn", "Source"),
    ("categories", "Loại tấn công", "Categories"),
    ("id", "Số", "Id"),
    ("state", "Trạng thái", "State"),
    ("attacker", "Nguồn tấn công", "Attacker"),
    ("victim", "Đối tượng bị tấn công", "Victim"),
    ("deadline", "Hạn", "Deadline"),
    ("overdue", "Quá hạn", "Overdue"),
    ("unattributed", "Chưa xác định hệ thống", "Unattributed"),
    ("change", "Thay đổi", "Change"),
    ("time", "Thời gian", "Time"),
    ("object", "Đối tượng", "Object"),
    ("registered", "Đăng ký mới", "Registered"),
    ("updated", "Cập nhật", "Updated"),
    ("agent_enrolled", "Tác tử mới đăng ký", "Agent enrolled"),
    ("agent_revoked", "Tác tử bị thu hồi", "Agent revoked"),
    ("agent_silent", "Tác tử mất liên lạc", "Agent silent"),
    ("policy", "Chính sách", "Policy"),
    ("policy_pushed", "Chính sách mới được áp dụng", "Policy pushed"),
    ("none", "Không có", "None"),
    ("console", "Bảng điều khiển giám sát", "Monitoring console"),
    ("overview", "Tổng quan", "Overview"),
    ("nav_alerts", "Cảnh báo", "Alerts"),
    ("nav_incidents", "Sự cố", "Incidents"),
    ("nav_agents", "Tác tử", "Agents"),
    ("nav_reports", "Báo cáo", "Reports"),
    ("sign_in", "Đăng nhập", "Sign in"),
    ("sign_out", "Đăng xuất", "Sign out"),
    ("username", "Tên người dùng", "User name"),
    ("password", "Mật khẩu", "Password"),
    ("silent_agents", "Đơn vị có tác tử mất liên lạc", "Agencies with silent agents"),
    ("overdue_incidents", "Sự cố quá hạn", "Overdue incidents"),
    ("due_soonest", "Sự cố sắp đến hạn", "Incidents due soonest"),
    ("alerts_24h", "Cảnh báo 24 giờ qua", "Alerts of the last 24 hours"),
    ("coverage", "Mức độ giám sát theo đơn vị", "Coverage per agency"),
    ("agency", "Đơn vị", "Agency"),
    ("layers", "Bốn lớp", "Four layers"),
    ("unsupervised", "Hệ thống chưa có tác tử", "Systems without a live agent"),
    ("missing_contacts", "Thiếu đầu mối liên hệ", "Missing contacts"),
    ("assessment_overdue", "Quá hạn đánh giá", "Assessments overdue"),
    ("online", "Trực tuyến", "Online"),
    ("host", "Máy chủ", "Host"),
    ("version", "Phiên bản", "Version"),
    ("policy_version", "Phiên bản chính sách", "Policy version"),
    ("records", "Bản ghi", "Records"),
    ("dropped", "Bị bỏ", "Dropped"),
    ("filter", "Lọc", "Filter"),
    ("hours", "Số giờ gần nhất", "Last hours"),
    ("ip", "Địa chỉ IP", "IP address"),
    ("timeline", "Diễn biến", "Timeline"),
    ("linked_alerts", "Cảnh báo liên quan", "Linked alerts"),
    ("move_to", "Chuyển sang", "Move to"),
    ("reason", "Lý do", "Reason"),
    ("note", "Ghi chú", "Note"),
    ("add_note", "Thêm ghi chú", "Add note"),
    ("assign", "Giao cho", "Assign to"),
    ("apply", "Thực hiện", "Apply"),
    ("kind", "Loại báo cáo", "Report"),
    ("from", "Từ", "From"),
    ("to", "Đến", "To"),
    ("format", "Định dạng", "Format"),
    ("language", "Ngôn ngữ", "Language"),
    ("download", "Tải về", "Download"),
    ("print_reports", "In báo cáo sự cố", "Print incident reports"),
    ("initial_report", "Báo cáo ban đầu", "Initial report"),
    ("completion_report", "Báo cáo kết thúc", "Completion report"),
    ("all", "Tất cả", "All"),
    ("open_only", "Chỉ sự cố đang mở", "Open only"),
    ("signed_in_as", "Đăng nhập với tên", "Signed in as"),
    ("refused", "Bị từ chối", "Refused"),
    ("back", "Quay lại", "Back"),
    ("silent", "Mất liên lạc", "Silent"),
    ("yes", "Có", "Yes"),
    ("no", "Không", "No"),
    ("live", "Cảnh báo mới hiện ngay, không cần tải lại trang.", "New alerts appear here without reloading."),
    ("secret_scan", "Quét tài liệu mật (máy / lần cuối)", "State-secret scan (hosts / last)"),
];

impl Text {
    pub fn get(self, key: &'static str) -> &'static str {
        match WORDS.iter().find(|(k, _, _)| *k == key) {
            Some((_, vi, en)) => match self.0 {
                Lang::Vi => vi,
                Lang::En => en,
            },
            None => key,
        }
    }

    /// The Vietnamese or the English of a pair kept in data.
    pub fn pick<'a>(self, vi: &'a str, en: &'a str) -> &'a str {
        match self.0 {
            Lang::Vi if !vi.is_empty() => vi,
            _ => en,
        }
    }

    /// An incident state's name.
    pub fn state(self, s: &str) -> String {
        match (self.0, State::parse(s)) {
            (Lang::Vi, Some(st)) => st.name_vi().to_string(),
            _ => s.replace('_', " "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_both_languages() {
        for (k, vi, en) in WORDS {
            assert!(!vi.is_empty() && !en.is_empty(), "{k}");
        }
        let keys: std::collections::BTreeSet<_> = WORDS.iter().map(|w| w.0).collect();
        assert_eq!(keys.len(), WORDS.len(), "a key is listed twice");
        assert_eq!(Text(Lang::Vi).get("attack_sources"), "Nguồn tấn công");
        assert_eq!(Text(Lang::En).state("in_progress"), "in progress");
        assert_eq!(Text(Lang::Vi).state("closed"), "Đã kết thúc");
        assert_eq!(Lang::parse(""), Some(Lang::Vi));
        assert_eq!(Lang::parse("fr"), None);
    }
}
