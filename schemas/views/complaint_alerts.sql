-- Complaint-rate cells at or above the warn threshold (schemas/complaint_thresholds.yaml).
CREATE OR REPLACE VIEW complaint_alerts AS
SELECT day, provider, sender_domain, complaints, delivered, complaint_rate, status, low_volume
FROM complaint_rates
WHERE status IN ('warn', 'critical');
