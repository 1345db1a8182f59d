DROP TABLE welcome_links;
DROP TABLE recovery_codes;
DROP TABLE second_factors;
